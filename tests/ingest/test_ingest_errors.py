"""Expected failures become a "failed" outcome that names the file and keeps the cause; a bug propagates
with its traceback logged, and the document keeps its last good snapshot (nothing is marked failed)."""

from __future__ import annotations

import logging
import sqlite3
import sysconfig
from pathlib import Path

import pytest

from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import CancelToken, IngestError, IngestSettings, ingest_path
from megalodoc.ingest.sources import SourceError
from megalodoc.model import Megalodon, load_bundle
from megalodoc.model.boundary import call_span
from megalodoc.storage import CorruptSnapshotError, StorageFullError, open_store

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture
def book(tmp_path) -> Path:
    path = tmp_path / "b.txt"
    path.write_text((STDLIB / "textwrap.py").read_text()[:3000])
    return path


def test_a_bug_in_the_model_propagates_and_the_document_keeps_its_last_snapshot(
    tmp_path, model_dir, book, monkeypatch, caplog
):
    real_forward = Megalodon.forward
    calls = {"n": 0}

    def forward_with_a_bug(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # after three calls were read and snapshotted
            raise TypeError("attention got an unexpected keyword argument 'mask'")
        return real_forward(self, *args, **kwargs)

    with Library(tmp_path / "lib.db", model_dir, snapshot_every=1) as lib:
        monkeypatch.setattr(Megalodon, "forward", forward_with_a_bug)
        with caplog.at_level(logging.ERROR, logger="megalodoc.ingest.pipeline"):
            with pytest.raises(TypeError, match="unexpected keyword argument 'mask'"):
                lib.ingest(book)
        (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "b.txt: unexpected TypeError while reading" in record.getMessage()
        assert record.exc_info is not None and record.exc_info[0] is TypeError  # logged with its traceback
        (doc,) = lib.documents()
        assert doc.status == "ingesting" and doc.error is None  # not "failed", no misleading message
        assert doc.committed_position == 3 * call_span(lib.bundle.model.config)
        assert [s.position for s in lib.snapshots(doc)][-1] == doc.committed_position
        assert doc.claimed_by is None  # released: the next run resumes at once
        monkeypatch.setattr(Megalodon, "forward", real_forward)
        resumed = lib.ingest_many([book])[0]
        assert resumed.status == "complete" and resumed.resumed_from == 3 * call_span(lib.bundle.model.config)


def test_a_bad_file_is_a_failed_outcome_naming_it_with_the_cause(tmp_path, model_dir, book):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n1 0 obj <<\n" + b"garbage" * 50)
    with Library(tmp_path / "lib.db", model_dir) as lib:
        outcome = lib.ingest_many([broken])[0]
        assert outcome.status == "failed" and str(broken.name) in outcome.message
        assert isinstance(outcome.cause, SourceError)
        with pytest.raises(IngestError, match="broken.pdf") as raised:
            lib.ingest(broken)
        assert isinstance(raised.value.__cause__, SourceError)


def test_a_document_another_worker_holds_is_refused_naming_the_file(tmp_path, model_dir, book):
    with Library(tmp_path / "lib.db", model_dir) as first, Library(tmp_path / "lib.db", first.bundle) as second:
        said = []

        def read_again_meanwhile(progress) -> None:
            if not said:
                with pytest.raises(IngestError) as refused:
                    second.ingest(book)
                said.append(str(refused.value))

        assert first.ingest(book, on_progress=read_again_meanwhile).status == "complete"
        assert said == [f"{book}: another worker is reading this document"]


def test_a_damaged_snapshot_fails_the_document_with_the_storage_error_as_cause(tmp_path, model_dir, book):
    db = tmp_path / "lib.db"
    with Library(db, model_dir) as lib:
        cancel = CancelToken()
        doc = lib.ingest(book, on_progress=lambda p: cancel.cancel() if p.snapshots_written >= 2 else None,
                         cancel=cancel)
        assert doc.status == "cancelled"
        blob = lib.snapshots(doc)[-1].blob_sha256
    connection = sqlite3.connect(db)
    connection.execute("UPDATE state_blobs SET data = ? WHERE sha256 = ?", (b"\0" * 64, blob))
    connection.commit()
    connection.close()
    with Library(db, model_dir) as lib:
        with pytest.raises(IngestError, match="b.txt") as raised:
            lib.ingest(book)
        assert isinstance(raised.value.__cause__, CorruptSnapshotError)
        (doc,) = lib.documents()
        assert doc.status == "failed" and "b.txt" in doc.error


def page_count(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA page_count").fetchone()[0]
    finally:
        connection.close()


def test_a_full_store_fails_the_document_and_keeps_every_snapshot_written_before(
    tmp_path, model_dir, book
):
    """A snapshot write that fails (the store fills up halfway: SQLite's max_page_count answers SQLITE_FULL
    as a full disk does) fails the document with that cause; every snapshot before it stays stored, and
    with room again the reading resumes from the last one and ends bit-identical to an uninterrupted run."""
    bundle, settings = load_bundle(model_dir), IngestSettings(snapshot_every=1)
    with open_store(str(tmp_path / "reference.db")) as store:
        reference = ingest_path(store, bundle, book, settings)
        assert reference.status == "complete"
        expected = store.list_snapshots(reference.document.id)
    path = tmp_path / "limited.db"
    open_store(str(path)).close()  # the schema alone
    limit = (page_count(path) + page_count(tmp_path / "reference.db")) // 2
    with open_store(str(path), sqlite_pragmas={"max_page_count": limit}) as store:
        outcome = ingest_path(store, bundle, book, settings)
        assert outcome.status == "failed" and isinstance(outcome.cause, StorageFullError)
        assert book.name in outcome.message
        document = store.get_document(outcome.document.id)
        stored = store.list_snapshots(document.id)
        assert 0 < len(stored) < len(expected)
        assert [(s.position, s.blob_sha256) for s in stored] == [
            (s.position, s.blob_sha256) for s in expected[: len(stored)]
        ]
        assert document.committed_position == stored[-1].position
        assert store.check_integrity() == []
    with open_store(str(path)) as store:  # with room again, the reading resumes from the last stored snapshot
        store.set_status(document.id, "ingesting")
        resumed = ingest_path(store, bundle, book, settings)
        assert resumed.status == "complete" and resumed.resumed_from == stored[-1].position
        assert store.list_snapshots(document.id)[-1].blob_sha256 == expected[-1].blob_sha256
