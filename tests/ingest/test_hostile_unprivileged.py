"""Hostile inputs that only a user without root's override can meet (chmod-000 files and folders), judged as
`nobody` under `setpriv`.

Root reads any file, so these cases run in a child process as nobody. CI runs as root in a fresh clone
whose folders nobody may not enter, so the readers (megalodoc's source readers and the pure-Python
packages they import) are copied to a world-readable temporary folder, the cases are made in another,
and a small script opens each case there with `open_source` and reports the outcome as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pathspec
import pypdf
import pytest
from hostile_inputs import PROSE, direct_unreadable, folder_specials, folder_unreadable

import megalodoc

SCRIPT = """
import json, sys
from megalodoc.ingest.sources import SourceError, open_source
for path in sys.argv[1:]:
    try:
        with open_source(path) as source:
            print(json.dumps({"path": path, "status": "read", "text": source.text(),
                              "skipped": {n.subject: n.reason for n in source.skipped}}))
    except SourceError as error:
        print(json.dumps({"path": path, "status": "refused", "message": str(error)}))
"""
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def world_readable(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def copy_readers(target: Path) -> Path:
    """megalodoc's source readers (only what `megalodoc.ingest.sources` imports) and pypdf and pathspec."""
    package = Path(megalodoc.__file__).resolve().parent
    code = target / "megalodoc"
    (code / "ingest").mkdir(parents=True)
    shutil.copy(package / "__init__.py", code / "__init__.py")
    for name in ("__init__.py", "normalize.py"):
        shutil.copy(package / "ingest" / name, code / "ingest" / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(package / "ingest" / "sources", code / "ingest" / "sources", ignore=ignore)
    for module in (pypdf, pathspec):
        source = Path(module.__file__).resolve().parent
        shutil.copytree(source, target / source.name, ignore=ignore)
    world_readable(target)
    return target


def interpreter_for_nobody(code: Path) -> list[str] | None:
    """An interpreter that nobody may run and that imports the copied readers, or None."""
    for candidate in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        if not os.path.exists(candidate):
            continue
        command = [*NOBODY, candidate, "-s", "-B", "-c", "import megalodoc.ingest.sources"]
        probe = subprocess.run(command, env={"PYTHONPATH": str(code), "PATH": os.environ.get("PATH", "")},
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return [*NOBODY, candidate, "-s", "-B"]
    return None


@pytest.fixture
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="megalodoc-nobody-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for path, dirs, _ in os.walk(folder):  # give back what the cases locked, then remove it all
        os.chmod(path, 0o755)
        for name in dirs:
            os.chmod(os.path.join(path, name), 0o755)
    shutil.rmtree(folder)


def test_unreadable_inputs_as_nobody(scratch: Path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run a child as nobody")
    code = copy_readers(scratch / "code")
    python = interpreter_for_nobody(code)
    if python is None:
        pytest.skip("no interpreter that nobody may run imports the copied readers")
    given, outside = scratch / "cases" / "given", scratch / "cases" / "outside"
    given.mkdir(parents=True)
    outside.mkdir()
    cases = [folder_unreadable(given, outside), direct_unreadable(given, outside), folder_specials(given, outside)]
    os.chmod(scratch / "cases", 0o755)
    locked = [given / "locked-repo" / "closed.py", given / "locked-repo" / "sealed", given / "closed.txt"]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0 for path in locked)
    result = subprocess.run([*python, "-c", SCRIPT, *[str(case.path) for case in cases]], capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(code), "PATH": os.environ.get("PATH", "")})
    assert result.returncode == 0, result.stderr
    outcomes = {item["path"]: item for item in map(json.loads, result.stdout.splitlines())}

    repo = outcomes[str(given / "locked-repo")]  # one unreadable file or folder does not sink the repository
    assert repo["status"] == "read"
    assert repo["text"] == f"# file: locked-repo/ok.py\n{PROSE}"
    assert repo["skipped"] == {"locked-repo/closed.py": "unreadable (permission denied)",
                               "locked-repo/sealed": "unreadable folder (permission denied)"}
    single = outcomes[str(given / "closed.txt")]
    assert single == {"path": str(given / "closed.txt"), "status": "refused",
                      "message": f"{given / 'closed.txt'}: unreadable: permission denied"}
    specials = outcomes[str(given / "special-repo")]
    assert specials["status"] == "read" and specials["skipped"] == {
        "special-repo/pipe.txt": "not a regular file (named pipe (FIFO)); not read",
        "special-repo/sock.txt": "not a regular file (socket); not read"}
