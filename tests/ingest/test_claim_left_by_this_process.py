"""A reading that ends while the store is unreachable (a database restart) cannot give its claim back, and
the document stays held by this process. A long-running server then called its own document "being read
by another worker" until the lease ran out (two minutes by default). A claim of this process that no
reading here holds any more is released at once; one a reading here still holds is not."""

from __future__ import annotations

import sysconfig
import threading
from pathlib import Path

import pytest

from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import CancelToken, IngestSettings, default_worker_id, ingest_path
from megalodoc.storage import IngestStatus

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "book.txt"
    path.write_text((STDLIB / "textwrap.py").read_text()[:4000])
    return path


def left_claimed(lib: Library, book: Path, holder: str) -> int:
    """A document of `book`, read partway (cancelled after its first model call), then claimed by `holder`
    as a reading whose end could not reach the store leaves it."""
    cancel = CancelToken()
    cancel.cancel()
    assert ingest_path(lib.store, lib.bundle, book, IngestSettings(snapshot_every=1),
                       cancel=cancel).status == IngestStatus.CANCELLED
    document = lib.documents()[0]
    lib.store.set_status(document.id, "ingesting")
    assert lib.store.claim_document(document.id, holder, 600)
    return document.id


def test_a_claim_this_process_left_behind_is_released_and_the_reading_resumes(tmp_path, model_dir, book):
    with Library(tmp_path / "lib.db", model_dir) as lib:
        doc_id = left_claimed(lib, book, default_worker_id())
        outcome = ingest_path(lib.store, lib.bundle, book, IngestSettings(snapshot_every=1))
        assert outcome.status == IngestStatus.COMPLETE, outcome.message
        assert lib.store.get_document(doc_id).claimed_by is None


def test_a_claim_a_reading_of_this_process_still_holds_is_left_alone(tmp_path, model_dir, book):
    with Library(tmp_path / "lib.db", model_dir) as lib:
        first = IngestSettings(snapshot_every=1)
        reading, go_on, outcomes = threading.Event(), threading.Event(), {}

        def held(progress) -> None:  # the first reading waits after its first snapshot
            if progress.snapshots_written >= 1 and not reading.is_set():
                reading.set()
                go_on.wait(60)

        thread = threading.Thread(target=lambda: outcomes.setdefault(
            "first", ingest_path(lib.store, lib.bundle, book, first, on_progress=held)))
        thread.start()
        try:
            assert reading.wait(60)
            second = ingest_path(lib.store, lib.bundle, book, IngestSettings(snapshot_every=1))
        finally:
            go_on.set()
            thread.join(60)
        assert second.status == IngestStatus.BUSY
        assert outcomes["first"].status == IngestStatus.COMPLETE
