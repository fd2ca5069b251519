"""`megalodoc db compact`: a document read with a snapshot every chunk thinned to one every K chunks, on a
real store and a real (tiny) model; restored states stay bit-identical to an uninterrupted run."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from pipeline_support import TINY_CHUNK, stdlib_model_folder
from state_helpers import assert_same_state, run_chunked

from megalodoc.app.cli import main as cli_main
from megalodoc.ingest.library import Library
from megalodoc.model.boundary import CALL_CHUNKS

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SPAN = CALL_CHUNKS * TINY_CHUNK  # tokens per model call: snapshots fall at multiples of it


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("compact")
    return stdlib_model_folder(folder)


def test_compact_thins_to_k_chunks_and_restores_exactly(tmp_path, model_dir, capsys):
    book = tmp_path / "book.txt"
    book.write_text((STDLIB / "textwrap.py").read_text()[:6000] + "\nend\n")
    db = tmp_path / "lib.db"
    with Library(db, model_dir, snapshot_every=1) as lib:
        doc = lib.ingest(book)
        before = lib.snapshots(doc)
        assert before[1].position == 2 * SPAN  # a snapshot after every call of CALL_CHUNKS chunks
        session = lib.store.create_session(doc.id, 2 * SPAN + 2, before[1].id)  # at 2 calls: off a 3-call grid
    size_before = db.stat().st_size  # closing the store moved the WAL into the file

    every = 3 * CALL_CHUNKS  # chunks
    assert cli_main(["db", "compact", "book.txt", "--every", str(every), "--vacuum", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"book.txt (document {doc.id}): kept" in out and "after VACUUM" in out

    with Library(db, model_dir) as lib:
        after = lib.snapshots(doc)
        grid = [s for s in after if s.id not in (session.snapshot_id, after[-1].id)]
        assert all(s.position % (every * TINY_CHUNK) == 0 for s in grid)
        assert [s.position for s in grid] == list(range(every * TINY_CHUNK, doc.token_count, every * TINY_CHUNK))
        assert session.snapshot_id in {s.id for s in after} and after[-1].position == doc.token_count
        assert len(after) < len(before) / 2
        assert lib.store.check_integrity() == []
        ids = lib.store.token_ids(doc.id, 0, doc.token_count)
        for p in (1, 4 * TINY_CHUNK - 1, 5 * TINY_CHUNK + 3, 2 * SPAN + 5, doc.token_count - 2, doc.token_count):
            assert_same_state(lib.state_at(doc, p), run_chunked(lib.bundle.model, ids[:p], SPAN))
    assert db.stat().st_size < size_before * 0.7  # two thirds of the states gone (and the WAL folded in)

    assert cli_main(["db", "compact", str(doc.id), "--every", str(every), "--db", str(db)]) == 0  # nothing to do
    assert "deleted 0" in capsys.readouterr().out


def test_compact_reports_unknown_documents_and_bad_k(tmp_path, model_dir, capsys):
    db = tmp_path / "lib.db"
    Library(db, model_dir).close()
    assert cli_main(["db", "compact", "nothing.pdf", "--every", "4", "--db", str(db)]) == 1
    assert "no document named 'nothing.pdf'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["db", "compact", "1", "--every", "0", "--db", str(db)])
    assert "K must be a whole number >= 1" in capsys.readouterr().err
