"""Files of /proc bind-mounted into a folder (or onto a path given directly) are refused like /proc itself:
their path says nothing, their file system does. Needs a private mount namespace (`unshare -m`, root), so
the cases run in a child process that mounts, opens them with `open_source` and reports JSON."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from megalodoc.ingest.sources.path_checks import read_regular

SCRIPT = """
import json, sys
from megalodoc.ingest.sources import SourceError, open_source
for path in sys.argv[1:]:
    try:
        with open_source(path) as source:
            print(json.dumps({"status": "read", "text": source.text(),
                              "skipped": {n.subject: n.reason for n in source.skipped}}))
    except SourceError as error:
        print(json.dumps({"status": "refused", "message": str(error)}))
"""
PROC_FILE = "/proc/sys/kernel/random/boot_id"
PROC_FOLDER = "/proc/sys/kernel/random"


def _can_mount() -> bool:
    if shutil.which("unshare") is None or not os.path.exists(PROC_FILE):
        return False
    probe = subprocess.run(["unshare", "-m", "mount", "--bind", "/", "/mnt"], capture_output=True, timeout=30)
    return probe.returncode == 0


def test_proc_files_mounted_inside_a_folder_are_refused(tmp_path: Path):
    if not _can_mount():
        pytest.skip("needs `unshare -m` and bind mounts (root) and /proc/sys/kernel/random")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("a = 1\n")
    (repo / "boot_id.txt").write_text("")
    (repo / "random").mkdir()
    direct = tmp_path / "direct.txt"
    direct.write_text("")
    mounts = [(PROC_FILE, repo / "boot_id.txt"), (PROC_FOLDER, repo / "random"), (PROC_FILE, direct)]
    command = " && ".join([*(f"mount --bind {shlex.quote(source)} {shlex.quote(str(target))}"
                             for source, target in mounts),
                           shlex.join([sys.executable, "-c", SCRIPT, str(repo), str(direct)])])
    result = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    folder, given = (json.loads(line) for line in result.stdout.splitlines())
    assert folder["status"] == "read" and folder["text"] == "# file: repo/a.py\na = 1\n"
    reason = "a file of the kernel or device file system /proc (mounted here), not a document; not read"
    assert folder["skipped"] == {"repo/boot_id.txt": reason, "repo/random": reason.replace("a file", "a folder")}
    assert given == {"status": "refused", "message": f"{direct}: a file of the kernel or device file system /proc "
                                                     "(mounted here), not a document; refused without reading it"}


def test_opening_a_proc_file_is_refused_at_the_descriptor_too():
    if not os.path.exists("/proc/self/status"):
        pytest.skip("no /proc")
    # what a file mounted after the listing meets when it is opened
    with pytest.raises(OSError, match="a file of the kernel or device file system /proc, not a document"):
        read_regular("/proc/self/status")
