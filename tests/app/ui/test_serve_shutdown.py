"""`megalodoc serve` stopped by SIGTERM (a service manager, `docker stop`) closes as Ctrl-C does: the
server ends with status 0 and the SQLite store is closed (its -wal file removed), not killed mid-write."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

STARTUP_SECONDS = 120.0  # importing gradio and torch on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_closes_the_server_and_the_store(tiny_model_dir: Path, tmp_path: Path, stop) -> None:
    port = free_port()
    db = tmp_path / "library.db"
    command = [sys.executable, "-m", "megalodoc.app.cli", "serve", "--db", str(db), "--model", str(tiny_model_dir),
               "--port", str(port), "--data-dir", str(tmp_path / "data"), "--threads", "1"]
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
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
            assert Path(f"{db}-wal").exists()  # the store is open
            server.send_signal(stop)
            assert server.wait(60) == 0, log.read_text()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert not Path(f"{db}-wal").exists(), log.read_text()  # closed: SQLite removes the WAL with the last connection
    assert "Traceback" not in log.read_text()
