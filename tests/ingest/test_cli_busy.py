"""`megalodoc ingest` with a document another worker is reading: that document is left to the other
worker and is no failure of this run; a real failure still makes the exit status 1."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from megalodoc.app.cli import main as cli_main
from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import CancelToken

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def test_a_document_another_worker_reads_is_left_to_it(tmp_path, model_dir, capsys):
    held, free = tmp_path / "held.txt", tmp_path / "free.txt"
    held.write_text((STDLIB / "textwrap.py").read_text()[:3000])
    free.write_text((STDLIB / "shlex.py").read_text()[:3000])
    db = tmp_path / "lib.db"
    with Library(db, model_dir) as lib:  # another worker (on another host) holds held.txt now
        token = CancelToken()
        document = lib.ingest(held, on_progress=lambda _: token.cancel(), cancel=token)
        lib.store.set_status(document.id, "ingesting")
        assert lib.store.claim_document(document.id, "elsewhere:4242:0123abcd", 60)
    options = ["--db", str(db), "--model", str(model_dir), "--quiet"]
    assert cli_main(["ingest", str(held), str(free), *options]) == 0
    out = capsys.readouterr().out
    assert "busy" in out and "1 of 2 documents read, 1 left to another worker reading them" in out
    assert cli_main(["ingest", str(held), str(tmp_path / "missing.txt"), str(free), *options]) == 1
    out = capsys.readouterr().out
    assert "1 of 3 documents read, 1 left to another worker reading them" in out and "missing.txt" in out
