"""A worker that stalls past its lease and loses the document to another worker writes nothing more:
not "failed" over the new holder's reading, not over a document the new holder completed."""

from __future__ import annotations

import sysconfig
import time
from pathlib import Path

import pytest

from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import IngestSettings, ingest_path
from megalodoc.storage import IngestStatus

STDLIB = Path(sysconfig.get_paths()["stdlib"])
LEASE = 0.5  # seconds; the stalled worker sleeps past it once


@pytest.fixture
def book(tmp_path: Path) -> Path:
    path = tmp_path / "book.txt"
    path.write_text((STDLIB / "textwrap.py").read_text()[:6000])
    return path


def stall_then(takeover):
    """A progress callback: after the first snapshot, sleep past the lease once, then call `takeover`."""
    done = []

    def on_progress(progress) -> None:
        if not done and progress.snapshots_written >= 1:
            done.append(True)
            time.sleep(LEASE * 1.6)
            takeover()

    return on_progress


def test_a_stalled_worker_leaves_the_successors_claim_alone(tmp_path, model_dir, book):
    with Library(tmp_path / "lib.db", model_dir) as lib:
        def successor_claims() -> None:
            document = lib.documents()[0]
            assert lib.store.claim_document(document.id, "successor", 60)  # the stalled lease expired

        settings = IngestSettings(snapshot_every=1, lease_seconds=LEASE, worker_id="stalled")
        outcome = ingest_path(lib.store, lib.bundle, book, settings, on_progress=stall_then(successor_claims))
        document = lib.documents()[0]
        assert (document.status, document.claimed_by, document.error) == ("ingesting", "successor", None)
        assert outcome.status == IngestStatus.BUSY and "lost the ingest claim" in outcome.message
        assert outcome.document.claimed_by == "successor"


def test_a_stalled_worker_leaves_a_document_its_successor_completed_complete(tmp_path, model_dir, book):
    with Library(tmp_path / "lib.db", model_dir) as lib, Library(tmp_path / "lib.db", model_dir) as other:
        finished = []
        settings = IngestSettings(snapshot_every=1, lease_seconds=LEASE, worker_id="stalled")
        outcome = ingest_path(lib.store, lib.bundle, book, settings,
                              on_progress=stall_then(lambda: finished.append(other.ingest(book))))
        assert finished[0].status == "complete"
        document = lib.documents()[0]
        assert (document.status, document.error) == ("complete", None)
        assert document.committed_position == document.token_count == finished[0].token_count
        assert outcome.status == IngestStatus.BUSY
        assert outcome.document.committed_position == document.committed_position  # the store's, not stale
