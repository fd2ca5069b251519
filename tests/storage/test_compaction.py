"""Thinning a document's snapshots to a spacing: what is kept, what is deleted, blobs and sessions."""

from __future__ import annotations

import pytest
from storage_testkit import MODEL, new_document, raw_execute, state_bytes

from megalodoc.storage import Store


def read_every_chunk(store: Store, chunks: int, tail: int = 0, size: int = 4096) -> int:
    """A document with a snapshot at every 64-token chunk and, with `tail`, a final one with tail ids."""
    document = new_document(store)
    for n in range(1, chunks + 1):
        store.add_snapshot(document.id, 64 * n, state_bytes(n, size), MODEL, 1)
    if tail:
        store.add_snapshot(document.id, 64 * chunks + tail, state_bytes(chunks), MODEL, 1, tail_ids=[7] * tail)
    return document.id


def test_thinning_keeps_the_spacing_the_end_and_what_sessions_use(store: Store, db_url: str) -> None:
    document_id = read_every_chunk(store, 10, tail=5)
    odd = store.latest_snapshot_at(document_id, 3 * 64)
    store.create_session(document_id, 200, odd.id)
    before = {row[0] for row in raw_execute(db_url, "SELECT sha256 FROM state_blobs")}
    report = store.thin_snapshots(document_id, 4 * 64)
    kept = store.list_snapshots(document_id)
    assert [s.position for s in kept] == [3 * 64, 4 * 64, 8 * 64, 10 * 64 + 5]
    assert kept[-1].tail_ids == (7,) * 5 and kept[-1].state_position == 640
    assert (report.kept, report.deleted) == (4, 7)
    after = {row[0] for row in raw_execute(db_url, "SELECT sha256 FROM state_blobs")}
    # the end shares its blob with the snapshot at 640, which is deleted: the blob stays
    assert after == {s.blob_sha256 for s in kept} and report.blobs_deleted == len(before - after) == 6
    assert report.blob_bytes_freed >= 6 * 4000
    for info in kept:
        assert store.load_snapshot_bytes(info.id) == state_bytes(info.state_position // 64)
    assert store.get_document(document_id).committed_position == 645
    assert store.check_integrity() == []
    again = store.thin_snapshots(document_id, 4 * 64)  # idempotent
    assert (again.kept, again.deleted, again.blobs_deleted) == (4, 0, 0)


def test_spacing_of_one_chunk_keeps_everything_and_bad_spacing_is_refused(store: Store) -> None:
    document_id = read_every_chunk(store, 5)
    assert store.thin_snapshots(document_id, 64).deleted == 0
    assert len(store.list_snapshots(document_id)) == 5
    with pytest.raises(ValueError, match="spacing"):
        store.thin_snapshots(document_id, 0)


def test_vacuum_gives_space_back_on_sqlite(tmp_path) -> None:
    from megalodoc.storage import open_store

    path = tmp_path / "v.db"
    with open_store(str(path), state_encoding="raw") as store:
        document_id = read_every_chunk(store, 40, size=40_000)
        store.vacuum()
        full = path.stat().st_size
        store.thin_snapshots(document_id, 64 * 10)
        assert store.vacuum() is True
        assert path.stat().st_size < full / 3
        assert len(store.list_snapshots(document_id)) == 4
