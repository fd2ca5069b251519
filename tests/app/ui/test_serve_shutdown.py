"""`megalodoc serve` stopped by SIGTERM (a service manager, `docker stop`) closes as Ctrl-C does: the
server ends with status 0 and the SQLite store is closed (its -wal file removed), not killed mid-write.
A reading under way is cancelled first (it keeps its last snapshot and releases its document): the
process used to end under it and abort ("terminate called without an active exception", status -6)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from megalodoc.storage import open_store

STARTUP_SECONDS = 120.0  # importing gradio and torch on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(model_dir: Path, folder: Path) -> Iterator[tuple[subprocess.Popen, str, Path, Path]]:
    """`megalodoc serve` on a free port, answering; yields (process, url, database, log). Killed if the
    test leaves it running."""
    port = free_port()
    db = folder / "library.db"
    command = [sys.executable, "-m", "megalodoc.app.cli", "serve", "--db", str(db), "--model", str(model_dir),
               "--port", str(port), "--data-dir", str(folder / "data"), "--threads", "1"]
    log = folder / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                assert server.poll() is None, log.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not answer: " + log.read_text()
                time.sleep(0.5)
            yield server, f"http://127.0.0.1:{port}/", db, log
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_closes_the_server_and_the_store(tiny_model_dir: Path, tmp_path: Path, stop) -> None:
    with serving(tiny_model_dir, tmp_path) as (server, _, db, log):
        assert Path(f"{db}-wal").exists()  # the store is open
        server.send_signal(stop)
        assert server.wait(60) == 0, log.read_text()
    assert not Path(f"{db}-wal").exists(), log.read_text()  # closed: SQLite removes the WAL with the last connection
    assert "Traceback" not in log.read_text()


def test_a_stop_during_a_reading_cancels_it_and_releases_the_document(tiny_model_dir: Path, tmp_path: Path) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    book = tmp_path / "book.txt"  # about 1.5 MB of real code: the tiny model reads it for many seconds
    book.write_text("".join(p.read_text(errors="replace") for p in sorted(stdlib.glob("*.py"))[:60])[:1_500_000])
    with serving(tiny_model_dir, tmp_path) as (server, url, db, log):
        client = Client(url, verbose=False)
        job = client.submit([handle_file(str(book))], api_name="/upload")
        deadline = time.monotonic() + STARTUP_SECONDS
        while not any(row[1] == "reading" and row[3] not in ("", "0") for out in job.outputs() if out[0]["data"]
                      for row in out[0]["data"]):
            assert not job.done() and time.monotonic() < deadline, (job.outputs()[-1:], log.read_text())
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        assert server.wait(120) == 0, log.read_text()
    text = log.read_text()
    assert "terminate called" not in text and "Traceback" not in text, text
    with open_store(str(db)) as store:
        [doc] = store.list_documents()
    assert doc.status == "cancelled" and doc.claimed_by is None, doc
    assert doc.committed_position > 0, doc  # kept what was read; a restart resumes from it
