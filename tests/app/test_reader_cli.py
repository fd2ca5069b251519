"""`megalodoc ask`, `continue` and `sessions` through the real CLI entry point, a tiny model and SQLite."""

from __future__ import annotations

import json

import pytest

from megalodoc.app.cli import main as cli_main
from megalodoc.app.reader import ReaderService


def test_ask_json_continue_and_sessions(tmp_path, tiny_model_dir, pdf, capsys):
    db = tmp_path / "cli.db"
    with ReaderService(db, tiny_model_dir) as service:
        doc = service.ingest(pdf)
    common = ["--db", str(db), "--model", str(tiny_model_dir)]
    assert cli_main(["ask", "atlas.pdf", "lighthouses keepers", "--json", "--seed", "3", "--max-tokens", "5",
                     *common]) == 0
    data = json.loads(capsys.readouterr().out)
    top = data["citations"][0]
    assert top["page"] == 3 and top["where"] == "page 3" and "lighthouses" in top["passage"]
    assert {"start", "end", "score", "path", "line_start", "line_end"} <= set(top)
    assert data["label"].startswith("machine-generated") and data["settings"]["seed"] == 3
    assert cli_main(["ask", str(doc.id), "lighthouses keepers", "--at", "p. 3", "--new-session", "trip",
                     "--seed", "3", "--max-tokens", "5", *common]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Evidence:") and "page 3" not in out.split("Ask (")[0]
    assert "stored as turn 1 of session 1" in out
    assert cli_main(["continue", "atlas.pdf", "--session", "1", "--max-tokens", "4", "--seed", "1", *common]) == 0
    assert "stored as turn 2 of session 1" in capsys.readouterr().out
    assert cli_main(["continue", "atlas.pdf", "--at", "50%", "--max-tokens", "4", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["position"] == round(doc.committed_position / 2)
    assert cli_main(["sessions", "list", "--db", str(db), "--model", str(tiny_model_dir)]) == 0
    assert "2 turn(s)" in capsys.readouterr().out
    assert cli_main(["sessions", "rename", "1", "the trip", *common]) == 0
    assert cli_main(["sessions", "show", "1", *common]) == 0
    assert "the trip" in capsys.readouterr().out
    target = tmp_path / "trip.md"
    assert cli_main(["sessions", "export", "1", "-o", str(target), *common]) == 0
    assert target.read_text().startswith("# the trip")
    capsys.readouterr()
    for bad, cause in ((tmp_path, "Is a directory"), (tmp_path / "no" / "trip.md", "No such file or directory")):
        assert cli_main(["sessions", "export", "1", "-o", str(bad), *common]) == 2  # it was a traceback
        assert capsys.readouterr().err == f"megalodoc sessions export: cannot write {bad}: {cause}\n"
    assert cli_main(["sessions", "delete", "1", *common]) == 0
    capsys.readouterr()
    assert cli_main(["sessions", "show", "1", *common]) == 2
    assert "no session with id 1" in capsys.readouterr().err


def test_cli_reports_expected_errors(tmp_path, tiny_model_dir, pdf, capsys):
    db = tmp_path / "cli.db"
    with ReaderService(db, tiny_model_dir) as service:
        service.ingest(pdf)
    common = ["--db", str(db), "--model", str(tiny_model_dir)]
    assert cli_main(["ask", "nothing.pdf", "why?", *common]) == 2
    assert "no document named 'nothing.pdf'" in capsys.readouterr().err
    assert cli_main(["ask", "atlas.pdf", " ", *common]) == 2
    assert "atlas.pdf (id 1): the question is empty" in capsys.readouterr().err
    assert cli_main(["continue", "atlas.pdf", "--at", "p. 40", *common]) == 2
    assert "atlas.pdf (id 1): no page 40" in capsys.readouterr().err
    question = b"what is \xff?".decode("utf-8", "surrogateescape")  # a byte that is not UTF-8, as argv gives it
    assert cli_main(["ask", "atlas.pdf", question, *common]) == 2
    err = capsys.readouterr().err
    assert "megalodoc ask: atlas.pdf (id 1): the question is not valid Unicode at character 9" in err
    with ReaderService(db, tiny_model_dir) as service:
        assert service.sessions(1) == []  # nothing was stored for it
        service.start_session(1, at=10)
    for command, extra in (("ask", ["why?", "--at", "5"]), ("ask", ["why?", "--new-session", "x"]),
                           ("continue", ["--at", "p. 2"])):
        assert cli_main([command, "atlas.pdf", *extra, "--session", "1", *common]) == 2
        assert f"megalodoc {command}: {extra[-2]} cannot be used with --session" in capsys.readouterr().err
    with ReaderService(db, tiny_model_dir) as service:
        assert len(service.sessions(1)) == 1 and service.turns(1) == []  # no session started, no turn stored


def test_surprise_command(tmp_path, tiny_model_dir, pdf, capsys):
    db = tmp_path / "cli.db"
    with ReaderService(db, tiny_model_dir) as service:
        doc = service.ingest(pdf)
    common = ["--db", str(db), "--model", str(tiny_model_dir)]
    assert cli_main(["surprise", "atlas.pdf", "--json", *common]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["start"] == 0 and rows[-1]["end"] == doc.committed_position
    assert {row["location"] for row in rows} == {"page 1", "page 2", "page 3", "page 4"}
    assert cli_main(["surprise", str(doc.id), "--top", "2", *common]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(rows)} chunks; bits per byte: median") and len(out.splitlines()) == 4
    assert cli_main(["surprise", str(doc.id), "--top", "0", *common]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # the summary only
    with pytest.raises(SystemExit):  # a negative N listed all chunks but the last
        cli_main(["surprise", str(doc.id), "--top", "-1", *common])
    assert "argument --top: must be 0 or more: '-1'" in capsys.readouterr().err


def test_output_into_a_pipe_closed_early_ends_quietly(tmp_path):
    # `megalodoc list | head -1`: printing into the closed pipe ended in a BrokenPipeError traceback
    import fcntl
    import subprocess
    import sys

    from megalodoc.storage import open_store

    db = tmp_path / "many.db"
    with open_store(str(db)) as store:
        for n in range(600):  # ~50 KB of listing: far more than the pipe buffer (set below) and one read hold
            store.create_document(f"hash-{n}", f"document-{n}.txt", "text", None, "tok", "model", token_count=10)
    process = subprocess.Popen([sys.executable, "-m", "megalodoc.app.cli", "list", "--db", str(db)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    first = process.stdout.readline()
    process.stdout.close()  # as `head -1` does after its line
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141 and b"document-0.txt" in first
    assert err == "", err
