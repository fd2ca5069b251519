"""A --db value that is not a usable URL: every command says so in one line naming the URL (its secrets
hidden) and what is wrong, and exits with status 2; no traceback."""

from __future__ import annotations

import pytest

from megalodoc.app.cli import main as cli_main

URL = "postgresql+psycopg://reader:Pw0rdS3cret@127.0.0.1:notaport/lib?sslpassword=KeyS3cret"
SHOWN = "postgresql+psycopg://reader:***@127.0.0.1:notaport/lib?sslpassword=***"


@pytest.mark.parametrize("command", [
    ["list"], ["db", "status"], ["db", "upgrade"], ["db", "check"], ["db", "compact", "1", "--every", "2"],
    ["ask", "1", "hi"], ["sessions", "list"], ["ingest", "--quiet"], ["surprise", "1"], ["serve"],
])
def test_a_malformed_url_is_one_line_and_status_2(command, tiny_model_dir, tmp_path, capsys) -> None:
    extra = {"ingest": [str(tmp_path / "a.txt")], "serve": ["--data-dir", str(tmp_path / "data")]}.get(command[0], [])
    (tmp_path / "a.txt").write_text("some text to read\n")
    model = ["--model", str(tiny_model_dir)] if command[0] not in ("list", "db") else []
    assert cli_main([*command, *extra, "--db", URL, *model]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "Pw0rdS3cret" not in err and "KeyS3cret" not in err
    err = err.splitlines()[-1]  # serve logs the loading of its model first
    prefix = f"megalodoc {' '.join(command[:2] if command[0] in ('db', 'sessions') else command[:1])}: "
    assert err == f"{prefix}not a usable database URL {SHOWN}: its port is not a number"
