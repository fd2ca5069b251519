"""`megalodoc serve` checks where it will listen before the model loads: Gradio said "Cannot find empty
port in range: 7890-7890 ... set GRADIO_SERVER_PORT or pass server_port to launch()" for a free port on
an address that is not this machine's, and named its own parameters instead of --port for a taken one."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from megalodoc.app.listen_check import listen_problem


def test_a_free_port_on_this_machine_passes() -> None:
    with socket.socket() as s:  # a port free now: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert listen_problem("127.0.0.1", port) is None


def test_each_problem_names_the_option_to_change(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = listen_problem("127.0.0.1", port)
        assert said == f"--port {port}: another program listens on 127.0.0.1:{port}; choose another port"
        served = subprocess.run([sys.executable, "-m", "megalodoc.app.cli", "serve", "--port", str(port),
                                 "--db", str(tmp_path / "x.db"), "--data-dir", str(tmp_path / "data")],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert served.returncode == 2 and served.stderr.strip().splitlines()[-1] == f"megalodoc serve: {said}"
    assert not (tmp_path / "x.db").exists()  # refused before the store (and the model) opened
    assert not (tmp_path / "data").exists()  # and before the data folder was made
    # 192.0.2.1 is reserved for documentation (RFC 5737): never an address of this machine
    assert listen_problem("192.0.2.1", port).startswith("--host 192.0.2.1: not an address of this machine (")
    assert listen_problem("nosuchhost.invalid", port).startswith(  # .invalid never resolves (RFC 2606)
        "--host nosuchhost.invalid: not a name or address this machine can resolve (")
