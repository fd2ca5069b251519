"""A claim is released early, before its lease ends, only when its holder's pid names a dead process of
this very PID namespace: a live worker in a container with the same host name keeps its claim."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import CancelToken
from megalodoc.storage import IngestStatus

STDLIB = Path(sysconfig.get_paths()["stdlib"])
HOLDER = ("import sys; from megalodoc.ingest.pipeline import default_worker_id; "
          "print(default_worker_id(), flush=True); sys.stdin.read()")


def unused_pid() -> int:
    """A pid no process of this namespace has now."""
    return next(pid for pid in range(30000, 300, -1) if not os.path.exists(f"/proc/{pid}"))


@pytest.fixture
def started_document(tmp_path: Path, model_dir: Path):
    """A Library and a document it started reading and stopped (cancelled at its first call), set back to
    "ingesting" with nobody holding it, as a worker finds a document another one is reading."""
    book = tmp_path / "book.txt"
    book.write_text((STDLIB / "textwrap.py").read_text()[:3000])
    with Library(tmp_path / "lib.db", model_dir) as lib:
        token = CancelToken()
        document = lib.ingest(book, on_progress=lambda _: token.cancel(), cancel=token)
        assert document.status == "cancelled"
        lib.store.set_status(document.id, "ingesting")
        yield lib, book, document


@pytest.fixture
def worker_in_another_pid_namespace():
    """The worker id of a live process in a new PID namespace (unshare) whose pid exists nowhere here."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    pid = unused_pid()
    script = f"echo {pid - 1} > /proc/sys/kernel/ns_last_pid; {sys.executable} -c '{HOLDER}'; true"
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = proc.stdout.readline().strip()
    if not holder:
        proc.kill()
        pytest.skip(f"cannot start a process in a new PID namespace: {proc.communicate()[1][-300:]}")
    assert holder.split(":")[1] == str(pid) and not os.path.exists(f"/proc/{pid}")
    yield holder
    proc.stdin.close()
    proc.wait(timeout=30)


def test_a_live_holder_in_another_pid_namespace_keeps_its_claim(started_document, worker_in_another_pid_namespace):
    lib, book, document = started_document
    assert lib.store.claim_document(document.id, worker_in_another_pid_namespace, 60)
    outcome = lib.ingest_many([book])[0]
    assert outcome.status == IngestStatus.BUSY, outcome.message
    assert lib.store.get_document(document.id).claimed_by == worker_in_another_pid_namespace


def test_a_holder_without_a_namespace_part_is_left_to_its_lease(started_document):
    """Its pid cannot be placed (written by an older release, or where /proc was unreadable)."""
    lib, book, document = started_document
    holder = f"{socket.gethostname()}:{unused_pid()}:0123abcd"
    assert lib.store.claim_document(document.id, holder, 60)
    assert lib.ingest_many([book])[0].status == IngestStatus.BUSY
    assert lib.store.get_document(document.id).claimed_by == holder
