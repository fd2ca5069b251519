"""Snapshots as a chunk-boundary state plus the token ids after it (tail ids): documents and turns."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine
from storage_testkit import MODEL, new_document, state_bytes

from megalodoc.storage import (
    SchemaBehindError,
    SnapshotExistsError,
    StatePayload,
    Store,
    open_store,
    upgrade_database,
)
from megalodoc.storage import schema as schema_module


def test_document_snapshot_with_tail_round_trips(store: Store) -> None:
    document = new_document(store)
    plain = store.add_snapshot(document.id, 64, state_bytes(1), MODEL, 1)
    assert plain.tail_ids == () and plain.state_position == 64
    end = store.add_snapshot(document.id, 100, state_bytes(1), MODEL, 1, tail_ids=list(range(36)))
    assert end.tail_ids == tuple(range(36)) and end.state_position == 64
    for info in (store.get_snapshot(end.id), store.latest_snapshot_at(document.id, 100),
                 store.list_snapshots(document.id)[-1]):
        assert info.id == end.id and info.tail_ids == tuple(range(36)) and info.state_position == 64
    assert store.latest_snapshot_at(document.id, 99).tail_ids == ()
    # the same bytes and blob are shared: one boundary state stored once
    assert end.blob_sha256 == plain.blob_sha256
    # re-adding the identical snapshot is a no-op; another tail at the same position is refused
    assert store.add_snapshot(document.id, 100, state_bytes(1), MODEL, 1, tail_ids=range(36)).id == end.id
    with pytest.raises(SnapshotExistsError):
        store.add_snapshot(document.id, 100, state_bytes(1), MODEL, 1, tail_ids=range(1, 37))


def test_turn_payload_with_tail_ids_round_trips(store: Store) -> None:
    document = new_document(store)
    start = store.add_snapshot(document.id, 128, state_bytes(2), MODEL, 1)
    session = store.create_session(document.id, 128, start.id)
    payload = StatePayload(256 + 7, state_bytes(3), MODEL, 1, {"turn": 1}, tail_ids=[9, 0, 2**31 - 1, 5, 5, 5, 1])
    turn = store.add_turn(session.id, None, "Who?", "Ada.", {}, state=payload)
    info = store.get_snapshot(turn.snapshot_id)
    assert info.kind == "turn" and info.position == 263 and info.state_position == 256
    assert info.tail_ids == (9, 0, 2**31 - 1, 5, 5, 5, 1) and info.metadata == {"turn": 1}
    assert store.load_snapshot_bytes(info.id) == state_bytes(3)
    empty = store.add_turn(session.id, turn.id, "q", "a", {}, state=StatePayload(384, state_bytes(4), MODEL, 1))
    assert store.get_snapshot(empty.snapshot_id).tail_ids == ()


@pytest.mark.parametrize(
    "tail, message",
    [([-1], r"\[0, 2\*\*31\)"), ([2**31], r"\[0, 2\*\*31\)"), (list(range(11)), "more than were read")],
)
def test_bad_tail_ids_are_refused_before_anything_is_written(store: Store, tail: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StatePayload(10, b"x", MODEL, 1, tail_ids=tail)
    document = new_document(store)
    with pytest.raises(ValueError, match=message):
        store.add_snapshot(document.id, 10, state_bytes(5), MODEL, 1, tail_ids=tail)
    assert store.list_snapshots(document.id) == []
    with pytest.raises(TypeError):
        StatePayload(10, b"x", MODEL, 1, tail_ids=b"\x01\x02")


def test_database_from_before_tails_upgrades_and_keeps_its_snapshots(db_url: str) -> None:
    with open_store(db_url) as store:
        document = new_document(store)
        old = store.add_snapshot(document.id, 64, state_bytes(6), MODEL, 1)
    engine = create_engine(db_url)
    try:  # take the database back to the revision before tail ids
        with engine.begin() as connection:
            command.downgrade(schema_module.alembic_config(db_url, connection), "0001")
    finally:
        engine.dispose()
    with pytest.raises(SchemaBehindError, match="megalodoc db upgrade"):
        open_store(db_url)
    assert upgrade_database(db_url) == ("0001", schema_module.SCHEMA_VERSION)
    with open_store(db_url) as store:
        kept = store.get_snapshot(old.id)
        assert kept.tail_ids == () and kept.state_position == 64
        assert store.load_snapshot_bytes(old.id) == state_bytes(6)
        assert store.add_snapshot(document.id, 70, state_bytes(6), MODEL, 1, tail_ids=[1] * 6).state_position == 64
