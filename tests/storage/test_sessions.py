"""Sessions and turns (a tree of branches), and deleting documents and sessions with what they own."""

from __future__ import annotations

import pytest
from storage_testkit import MODEL, new_document, raw_execute, state_bytes

from megalodoc.storage import (
    ChunkText,
    DocumentInUseError,
    Location,
    NotFoundError,
    StatePayload,
    Store,
)


def read_document(store: Store, positions: tuple[int, ...] = (64, 128)) -> int:
    document = new_document(store)
    for position in positions:
        store.add_snapshot(
            document.id,
            position,
            state_bytes(position),
            MODEL,
            1,
            chunks=[ChunkText(position - 64, position, f"text up to {position}")],
            locations=[Location.page_range(position - 64, position, position // 64)],
        )
    return document.id


def turn_state(seed: int, position: int = 150) -> StatePayload:
    return StatePayload(position, state_bytes(seed), MODEL, 1, {"after": "turn"})


def test_conversation_tree_with_branches(store: Store) -> None:
    document_id = read_document(store)
    start = store.latest_snapshot_at(document_id, 100)
    session = store.create_session(document_id, 100, start.id, title="Chapter 1")
    first = store.add_turn(session.id, None, "Who?", "Ada.", {"temperature": 0.7}, state=turn_state(1))
    second = store.add_turn(session.id, first.id, "When?", "1843.", {"temperature": 0.7}, state=turn_state(2))
    branch = store.add_turn(session.id, first.id, "Where?", "London.", {"top_p": 0.9}, state=turn_state(3))
    deeper = store.add_turn(session.id, branch.id, "Why?", "Notes.", {}, state=turn_state(4))

    assert [t.id for t in store.turn_path(deeper.id)] == [first.id, branch.id, deeper.id]
    assert [t.id for t in store.turn_path(second.id)] == [first.id, second.id]
    assert [t.id for t in store.list_children(session.id, first.id)] == [second.id, branch.id]
    assert [t.id for t in store.list_children(session.id)] == [first.id]
    assert len(store.list_turns(session.id)) == 4
    assert store.get_turn(branch.id).sampling == {"top_p": 0.9}

    after = store.get_snapshot(deeper.snapshot_id)
    assert (after.kind, after.position, after.metadata) == ("turn", 150, {"after": "turn"})
    assert store.load_snapshot_bytes(deeper.snapshot_id) == state_bytes(4)
    assert [s.position for s in store.list_snapshots(document_id)] == [64, 128]  # turn states not listed
    assert len(store.list_snapshots(document_id, kind="turn")) == 4
    assert store.get_document(document_id).committed_position == 128  # turns never move it
    assert store.get_session(session.id).updated_at >= session.updated_at
    with pytest.raises(NotFoundError):
        store.turn_path(deeper.id + 100)


def test_sessions_listing_renaming_and_checks(store: Store) -> None:
    a, b = read_document(store), read_document(store)
    s1 = store.create_session(a, 64)
    s2 = store.create_session(b, 128, title="b")
    store.add_turn(s1.id, None, "q", "a", {})
    assert [s.id for s in store.list_sessions()] == [s1.id, s2.id]  # most recently active first
    assert [s.id for s in store.list_sessions(document_id=b)] == [s2.id]
    assert store.rename_session(s2.id, "renamed").title == "renamed"
    assert store.rename_session(s2.id, "Über, chapter 2").title == "Über, chapter 2"
    # a title from command-line bytes that are not UTF-8 (lone surrogates): the database driver refused it
    # with "'utf-8' codec can't encode character"; now the title is named and nothing changes
    title = b"ch \xff".decode("utf-8", "surrogateescape")
    for attempt in (lambda: store.rename_session(s2.id, title), lambda: store.create_session(b, 128, title=title)):
        with pytest.raises(ValueError, match=r"title is not valid Unicode at character 4 \('\\udcff'"):
            attempt()
    assert store.get_session(s2.id).title == "Über, chapter 2" and len(store.list_sessions(document_id=b)) == 1
    with pytest.raises(ValueError, match="beyond what document"):
        store.create_session(a, 10_000_000)
    later = store.latest_snapshot_at(a, 128)
    with pytest.raises(ValueError, match="cannot start a session at position 100"):
        store.create_session(a, 100, later.id)
    with pytest.raises(ValueError, match="belongs to document"):
        store.create_session(b, 128, later.id)
    other_turn = store.add_turn(s2.id, None, "q", "a", {})
    with pytest.raises(ValueError, match=f"belongs to session {s2.id}"):
        store.add_turn(s1.id, other_turn.id, "q", "a", {})
    with pytest.raises(ValueError, match="JSON"):
        store.add_turn(s1.id, None, "q", "a", {"bad": {1, 2}})
    with pytest.raises(ValueError, match="not both"):
        store.add_turn(s1.id, None, "q", "a", {}, later.id, state=turn_state(1))
    with pytest.raises(ValueError, match="cannot be stored for document"):
        store.add_turn(s1.id, None, "q", "a", {}, state=StatePayload(70, b"x", "other-model", 1))
    with pytest.raises(NotFoundError):
        store.add_turn(s1.id + 100, None, "q", "a", {})


def test_delete_session_removes_its_turns_and_turn_states(store: Store, db_url: str) -> None:
    document_id = read_document(store)
    keep = store.create_session(document_id, 64)
    kept_turn = store.add_turn(keep.id, None, "q", "a", {}, state=turn_state(10))
    gone = store.create_session(document_id, 64)
    parent = store.add_turn(gone.id, None, "q", "a", {}, state=turn_state(11))
    store.add_turn(gone.id, parent.id, "q2", "a2", {}, state=turn_state(12))
    store.delete_session(gone.id)
    assert [s.id for s in store.list_sessions()] == [keep.id]
    assert [s.id for s in store.list_snapshots(document_id, kind="turn")] == [kept_turn.snapshot_id]
    # two document states + one kept turn state remain; the deleted turns' blobs are gone
    assert raw_execute(db_url, "SELECT COUNT(*) FROM state_blobs") == [(3,)]
    with pytest.raises(NotFoundError):
        store.get_session(gone.id)


def test_delete_document_is_refused_while_sessions_point_at_it(store: Store) -> None:
    document_id = read_document(store)
    session = store.create_session(document_id, 64)
    store.add_turn(session.id, None, "q", "a", {}, state=turn_state(1))
    with pytest.raises(DocumentInUseError, match="1 session"):
        store.delete_document(document_id)
    assert store.get_document(document_id).committed_position == 128
    store.delete_document(document_id, force=True)
    with pytest.raises(NotFoundError):
        store.get_document(document_id)
    assert store.list_sessions() == []


def test_delete_document_is_refused_while_a_worker_ingests_it(store: Store) -> None:
    document_id = read_document(store)
    assert store.claim_document(document_id, "busy-worker", 60)
    with pytest.raises(DocumentInUseError, match="busy-worker"):
        store.delete_document(document_id)
    store.set_status(document_id, "cancelled")
    store.delete_document(document_id)


def test_delete_document_removes_everything_it_owns_but_shared_blobs(store: Store, db_url: str) -> None:
    doomed = read_document(store, (64, 128, 192))
    survivor = new_document(store)
    store.add_snapshot(survivor.id, 64, state_bytes(64), MODEL, 1)  # same bytes as doomed's first state
    store.delete_document(doomed)
    for table in ("snapshots", "chunks", "locations"):
        rows = raw_execute(db_url, f"SELECT COUNT(*) FROM {table} WHERE document_id = ?", (doomed,))
        assert rows == [(0,)], table
    assert raw_execute(db_url, "SELECT COUNT(*) FROM state_blobs") == [(1,)]
    info = store.list_snapshots(survivor.id)[0]
    assert store.load_snapshot_bytes(info.id) == state_bytes(64)
    assert store.check_integrity() == []
    with pytest.raises(NotFoundError):
        store.delete_document(doomed)


def test_a_nul_character_is_kept_alike_on_every_backend(store: Store) -> None:
    # PostgreSQL text cannot hold U+0000: a chunk or an answer holding one failed there (and only there)
    # after the work was done. Free text keeps it as U+FFFD everywhere; names and titles refuse it.
    document = new_document(store)
    store.add_snapshot(document.id, 64, state_bytes(64), MODEL, 1,
                       chunks=[ChunkText(0, 64, "before\x00after", tuple(range(64)))])
    [chunk] = store.get_chunks(document.id, 0, 64)
    assert chunk.text == "before\ufffdafter" and store.token_ids(document.id, 0, 64) == list(range(64))  # ids exact
    session = store.create_session(document.id, 64)
    turn = store.add_turn(session.id, None, "why\x00?", "an\x00swer", {})
    assert (turn.prompt, turn.answer) == ("why\ufffd?", "an\ufffdswer") == (
        store.get_turn(turn.id).prompt, store.get_turn(turn.id).answer)
    failed = store.set_status(document.id, "failed", error="bad byte \x00 in a.txt")
    assert failed.error == "bad byte \ufffd in a.txt"
    for attempt in (lambda: store.create_session(document.id, 64, title="a\x00b"),
                    lambda: store.rename_session(session.id, "a\x00b")):
        with pytest.raises(ValueError, match=r"title contains a NUL character \(U\+0000\) at character 2"):
            attempt()
    assert store.get_session(session.id).title is None
