"""`megalodoc serve` stopped by SIGTERM (a service manager, `docker stop`) closes as Ctrl-C does: the
server ends with status 0 and the SQLite store is closed (its -wal file removed), not killed mid-write.
A reading under way is cancelled first (it keeps its last snapshot and releases its document): the
process used to end under it and abort ("terminate called without an active exception", status -6). The
web server closes after that, not before (its close waits for open pages up to 5 s, while the reading
went on)."""

from __future__ import annotations

import signal
import sysconfig
import time
from pathlib import Path

import pytest
from app_support import serving
from gradio_client import Client, handle_file

from megalodoc.storage import open_store

STARTUP_SECONDS = 120.0  # a reading under way, on a busy 2-core machine


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
    # the reading is cancelled at once; the web server, which waits for open pages a few seconds, closes after
    assert "stopping: cancelling 1 reading(s)" in text and "web server closed" in text, text
    assert text.index("stopping: cancelling 1 reading(s)") < text.index("web server closed"), text
    with open_store(str(db)) as store:
        [doc] = store.list_documents()
    assert doc.status == "cancelled" and doc.claimed_by is None, doc
    assert doc.committed_position > 0, doc  # kept what was read; a restart resumes from it
