"""The command line under strace: reading representative hostile inputs opens nothing outside the given
paths (no escape target, no special file, nothing under /proc, /sys or /dev but what the interpreter and
torch open for themselves), and the store passes `megalodoc db check` afterwards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_inputs import HOSTILE_CAPS, build

from megalodoc.app.cli import main as cli_main

REPRESENTATIVE = ("folder-symlinks-loops-outside", "folder-fifo-socket", "markdown-include", "rst-include",
                  "html-entities", "tar-symlink-hardlink-outside", "tar-dotdot-absolute", "zip-symlink-outside",
                  "direct-fifo", "direct-proc-symlink", "direct-sys-symlink", "direct-device-symlink",
                  "file-with-trailing-slash", "pdf-nested", "folder-undecodable-names")
# What the interpreter, torch, SQLite and megalodoc open for themselves (never an input): the process's own
# /proc entries, CPU and cgroup facts, the kernel's boot id (read once when the ingest pipeline loads: it
# names the machine in worker ids), and the usual character devices.
SYSTEM_ALLOWED = re.compile(
    r"^/proc/(self|thread-self|\d+)/|^/proc/(cpuinfo|meminfo|stat)$|^/proc/sys/kernel/random/boot_id$"
    r"|^/sys/devices/system/|^/sys/fs/cgroup/|^/dev/(null|u?random|tty|shm/)")
OPEN_CALL = re.compile(r'^(\d+)\s+(?:open|openat|openat2)\((?:AT_FDCWD|\d+)?,?\s*"((?:[^"\\]|\\.)*)"')


def opened_paths(log: Path) -> tuple[set[str], set[int]]:
    """Paths passed to open/openat (strace's escapes decoded) and the pids that opened them."""
    paths, pids = set(), set()
    for line in log.read_text(errors="replace").splitlines():
        match = OPEN_CALL.match(line)
        if match:
            pids.add(int(match.group(1)))
            raw = match.group(2).encode("latin-1", "backslashreplace").decode("unicode_escape")
            paths.add(os.fsdecode(raw.encode("latin-1")))
    return paths, pids


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (Debian package strace)")
def test_cli_opens_nothing_outside_the_given_paths(tmp_path: Path, tiny_model_dir: Path):
    cases = {case.kind: case for case in build(tmp_path / "hostile")}
    chosen = [cases[kind] for kind in REPRESENTATIVE]
    model = tiny_model_dir
    db, log = tmp_path / "store.db", tmp_path / "strace.log"
    command = [sys.executable, "-m", "megalodoc.app.cli", "ingest", *[case.path for case in chosen], "--db", str(db),
               "--model", str(model), "--quiet", "--max-bytes", str(HOSTILE_CAPS.max_bytes),
               "--max-files", str(HOSTILE_CAPS.max_files), "--max-pages", str(HOSTILE_CAPS.max_pages)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(["strace", "-f", "-qq", "-s", "4096", "-e", "trace=open,openat,openat2", "-o", str(log),
                             *command], capture_output=True, text=True, timeout=300, env=env)
    if result.returncode not in (0, 1) and "ptrace" in result.stderr:
        pytest.skip(f"strace cannot trace here: {result.stderr.strip()[:200]}")
    assert result.returncode == 1, result.stderr  # some inputs are refused, the rest read
    for case in chosen:
        status = "failed" if case.outcome == "refuse" else "complete"
        assert re.search(rf"^  {status}\s+{re.escape(case.path)}\s", result.stdout, re.MULTILINE), (case.kind,
                                                                                                  result.stdout)
    paths, pids = opened_paths(log)
    assert any(path.endswith("include.md") for path in paths)  # the trace does see the inputs being read

    hostile_root = str(tmp_path / "hostile")
    allowed_inside = (str(tmp_path / "hostile" / "given"),)
    unread = {os.path.realpath(path) for case in chosen for path in case.unread}
    problems = []
    for path in sorted(paths):
        real = os.path.realpath(path) if os.path.isabs(path) else path
        if real in unread:
            problems.append(f"{path}: a special file that must be refused unread")
        elif real.startswith(hostile_root) and not real.startswith(allowed_inside):
            problems.append(f"{path}: outside the given paths")
        elif re.match(r"^/(proc|sys|dev)/", path) and not SYSTEM_ALLOWED.match(path):
            if not any(path.startswith(f"/proc/{pid}/") for pid in pids):
                problems.append(f"{path}: a kernel or device file")
    assert problems == []
    assert cli_main(["db", "check", "--db", str(db)]) == 0
