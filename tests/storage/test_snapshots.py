"""Snapshots: one-transaction writes, ordering, deduplication, listing without blobs, verified reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event
from storage_testkit import MODEL, new_document, raw_execute, state_bytes

from megalodoc.storage import (
    ChunkText,
    ClaimLostError,
    ConflictError,
    CorruptSnapshotError,
    DocumentStatusError,
    Location,
    NotFoundError,
    SnapshotExistsError,
    SnapshotOrderError,
    Store,
    open_store,
)
from megalodoc.storage.blob_encoding import ENCODINGS, encode_blob


def test_add_list_latest_load(store: Store) -> None:
    document = new_document(store)
    infos = [store.add_snapshot(document.id, p, state_bytes(p), MODEL, 1, {"chunk_size": 64}) for p in (64, 128, 192)]
    assert store.get_document(document.id).committed_position == 192
    assert store.list_snapshots(document.id) == infos
    assert infos[1].metadata == {"chunk_size": 64}
    assert infos[1].size_bytes == 4096
    assert store.get_snapshot(infos[2].id) == infos[2]
    assert store.latest_snapshot_at(document.id, 191) == infos[1]
    assert store.latest_snapshot_at(document.id, 192) == infos[2]
    assert store.latest_snapshot_at(document.id, 10_000) == infos[2]
    assert store.latest_snapshot_at(document.id, 63) is None
    for info in infos:
        assert store.load_snapshot_bytes(info.id) == state_bytes(info.position)
    with pytest.raises(NotFoundError):
        store.load_snapshot_bytes(infos[-1].id + 99)
    with pytest.raises(NotFoundError):
        store.list_snapshots(document.id + 99)


def test_positions_must_increase(store: Store) -> None:
    document = new_document(store)
    store.add_snapshot(document.id, 128, state_bytes(1), MODEL, 1)
    with pytest.raises(SnapshotOrderError, match="not after its committed position 128"):
        store.add_snapshot(document.id, 64, state_bytes(2), MODEL, 1)
    assert [s.position for s in store.list_snapshots(document.id)] == [128]


def test_re_adding_a_position_is_idempotent_for_same_bytes_and_refused_otherwise(store: Store) -> None:
    document = new_document(store)
    first = store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1, chunks=[ChunkText(0, 64, "once")])
    again = store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1, chunks=[ChunkText(0, 64, "once")])
    assert again == first
    with pytest.raises(SnapshotExistsError, match="position 64"):
        store.add_snapshot(document.id, 64, state_bytes(2), MODEL, 1)
    assert len(store.list_snapshots(document.id)) == 1
    assert [c.text for c in store.get_chunks(document.id, 0, 64)] == ["once"]
    assert store.load_snapshot_bytes(first.id) == state_bytes(1)


def test_identical_states_share_one_blob(store: Store, db_url: str) -> None:
    a, b = new_document(store), new_document(store)
    one = store.add_snapshot(a.id, 64, state_bytes(7), MODEL, 1)
    two = store.add_snapshot(b.id, 64, state_bytes(7), MODEL, 1)
    assert one.blob_sha256 == two.blob_sha256
    assert raw_execute(db_url, "SELECT COUNT(*) FROM state_blobs") == [(1,)]


def test_snapshot_text_locations_and_position_commit_together_or_not_at_all(store: Store, db_url: str) -> None:
    document = new_document(store)
    store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1, chunks=[ChunkText(0, 64, "first chunk")])
    # The second write carries a chunk clashing with a stored one: the database rejects it mid-transaction.
    with pytest.raises(ConflictError, match="(?i)unique|duplicate"):
        store.add_snapshot(
            document.id,
            128,
            state_bytes(2),
            MODEL,
            1,
            chunks=[ChunkText(64, 128, "second chunk"), ChunkText(0, 30, "clash")],
            locations=[Location.page_range(64, 128, 2)],
        )
    assert [s.position for s in store.list_snapshots(document.id)] == [64]
    assert store.get_document(document.id).committed_position == 64
    assert store.get_chunks(document.id, 0, 1000)[-1].text == "first chunk"
    assert store.locate(document.id, 100) is None
    assert raw_execute(db_url, "SELECT COUNT(*) FROM state_blobs") == [(1,)]
    assert store.check_integrity() == []


def test_wrong_model_and_wrong_status_are_refused(store: Store) -> None:
    document = new_document(store)
    with pytest.raises(ValueError, match="cannot be stored for document"):
        store.add_snapshot(document.id, 64, state_bytes(1), "other-model", 1)
    store.set_status(document.id, "cancelled")
    with pytest.raises(DocumentStatusError, match="cancelled"):
        store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1)
    assert store.list_snapshots(document.id) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"position": -1}, "position"),
        ({"state_bytes": b""}, "state_bytes"),
        ({"metadata": {"x": object()}}, "JSON"),
        ({"chunks": [ChunkText(0, 100, "past the snapshot")]}, "ends after the snapshot position 64"),
        ({"locations": [Location.page_range(60, 70, 1)]}, "ends after the snapshot position 64"),
        ({"chunks": [ChunkText(0, 10, "a"), ChunkText(0, 20, "b")]}, "two chunks start at token 0"),
    ],
)
def test_bad_snapshot_arguments_are_named(store: Store, kwargs: dict, message: str) -> None:
    document = new_document(store)
    arguments = dict(position=64, state_bytes=state_bytes(1), model_fingerprint=MODEL, schema_version=1)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        store.add_snapshot(document.id, **arguments)
    assert store.get_document(document.id).committed_position == 0


def test_worker_that_lost_its_claim_cannot_write(store: Store) -> None:
    document = new_document(store)
    assert store.claim_document(document.id, "old", 0.05)
    store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1, worker_id="old")
    import time

    time.sleep(0.15)
    assert store.claim_document(document.id, "new", 30)
    with pytest.raises(ClaimLostError, match="held by new"):
        store.add_snapshot(document.id, 128, state_bytes(2), MODEL, 1, worker_id="old")
    assert store.add_snapshot(document.id, 128, state_bytes(3), MODEL, 1, worker_id="new").position == 128


def test_listing_never_reads_blobs(store: Store) -> None:
    document = new_document(store)
    for position in range(64, 64 * 21, 64):
        store.add_snapshot(document.id, position, state_bytes(position), MODEL, 1)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert len(store.list_snapshots(document.id)) == 20
    store.latest_snapshot_at(document.id, 500)
    store.get_snapshot(1)
    assert statements and not any("state_blobs" in s or ".data" in s for s in statements)


def flip_byte_in_file(path: Path, needle: bytes) -> None:
    """Damage one byte of `needle` where it sits in the file, as a failing disk would."""
    content = bytearray(path.read_bytes())
    at = content.find(needle)
    assert at >= 0 and content.find(needle, at + 1) < 0, "needle must occur exactly once"
    content[at + len(needle) // 2] ^= 0x01
    path.write_bytes(bytes(content))


def test_blob_corrupted_on_disk_is_detected_and_repaired_by_a_good_copy(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with open_store(str(path)) as store:
        document = new_document(store)
        good = store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1)
        damaged = store.add_snapshot(document.id, 128, state_bytes(2, 20_000), MODEL, 1)
    # Closing checkpointed the WAL: the blob now lies in the database file itself, as the store encodes it.
    flip_byte_in_file(path, encode_blob(state_bytes(2, 20_000), store.state_encoding)[5000:5064])
    with open_store(str(path)) as store:
        assert store.load_snapshot_bytes(good.id) == state_bytes(1)
        with pytest.raises(
            CorruptSnapshotError, match=f"snapshot {damaged.id} \\(document {document.id}, position 128\\)"
        ):
            store.load_snapshot_bytes(damaged.id)
        problems = store.check_integrity()
        assert any("does not match its sha256" in p for p in problems)
        # Storing the same state again (e.g. after re-reading) rewrites the damaged copy.
        store.add_snapshot(document.id, 192, state_bytes(2, 20_000), MODEL, 1)
        assert store.load_snapshot_bytes(damaged.id) == state_bytes(2, 20_000)
        assert store.check_integrity() == []


def test_corrupted_blob_is_detected_on_every_backend(store: Store, db_url: str) -> None:
    document = new_document(store)
    info = store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1)
    damaged = bytearray(state_bytes(1))
    damaged[100] ^= 0x80
    for encoding in ENCODINGS:  # a damaged byte, under each encoding the store reads
        stored = bytearray(encode_blob(bytes(damaged), encoding))
        raw_execute(db_url, "UPDATE state_blobs SET data = ?, encoding = ? WHERE sha256 = ?",
                    (bytes(stored), encoding, info.blob_sha256))
        with pytest.raises(CorruptSnapshotError, match=f"snapshot {info.id}.*should be 4096 bytes"):
            store.load_snapshot_bytes(info.id)
    raw_execute(db_url, "UPDATE state_blobs SET data = ?, encoding = 'raw' WHERE sha256 = ?",
                (state_bytes(1)[:-1], info.blob_sha256))
    with pytest.raises(CorruptSnapshotError, match="4095 long"):
        store.load_snapshot_bytes(info.id)
    raw_execute(db_url, "UPDATE state_blobs SET data = ?, encoding = 'planes4' WHERE sha256 = ?",
                (encode_blob(state_bytes(1), "planes4")[:-3], info.blob_sha256))
    with pytest.raises(CorruptSnapshotError, match="does not decode"):
        store.load_snapshot_bytes(info.id)


def test_integrity_check_notices_a_committed_position_without_its_snapshot(store: Store, db_url: str) -> None:
    document = new_document(store)
    store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1)
    assert store.check_integrity() == []
    raw_execute(db_url, "UPDATE documents SET committed_position = 128 WHERE id = ?", (document.id,))
    assert store.check_integrity() == [f"document {document.id}: committed position 128 but last snapshot at 64"]
