"""An id no row can have (typed into a page or given on the command line) is "not found", on both
backends: one past the id column's range failed inside the driver before (OverflowError on SQLite,
"integer out of range" on PostgreSQL, shown to web users with the database address)."""

from __future__ import annotations

import inspect

import pytest
from storage_testkit import MODEL, state_bytes

from megalodoc.storage import ChunkLoss, ChunkText, Location, NotFoundError, StatePayload, StorageError, Store
from megalodoc.storage.row_ids import INTEGER_MAX_ID, SQLITE_MAX_ID

BEYOND = [INTEGER_MAX_ID + 1, SQLITE_MAX_ID, SQLITE_MAX_ID + 1, 10**30, 0, -1, -(2**70)]


def document(store):
    return store.create_document("a" * 64, "book.txt", "text", "/data/book.txt", "tok-0", "model-0")


@pytest.mark.parametrize("row_id", BEYOND)
def test_an_id_no_row_can_have_is_not_found(store, row_id: int) -> None:
    doc = document(store)
    session = store.create_session(doc.id, 0)
    with pytest.raises(NotFoundError, match=f"no document with id {row_id}"):
        store.get_document(row_id)
    assert store.get_document_or_none(row_id) is None
    with pytest.raises(NotFoundError, match=f"no document with id {row_id}"):
        store.list_snapshots(row_id)
    with pytest.raises(StorageError, match=f"of document {row_id} are not stored"):
        store.token_ids(row_id, 0, 1)
    assert store.get_chunks(row_id, 0, 1) == []
    with pytest.raises(NotFoundError, match=f"no document with id {row_id}"):
        store.delete_document(row_id)
    with pytest.raises(NotFoundError, match=f"no session with id {row_id}"):
        store.get_session(row_id)
    assert store.list_turns(row_id) == [] and store.list_sessions(row_id) == []
    with pytest.raises(NotFoundError, match=f"no turn with id {row_id}"):
        store.get_turn(row_id)
    with pytest.raises(NotFoundError, match=f"no snapshot with id {row_id}"):
        store.get_snapshot(row_id)
    # the rows that exist are untouched and still found
    assert store.get_document(doc.id) == doc and store.get_session(session.id).id == session.id


# Every public method of the store that takes a row id, by (method, parameter), called with `i` in that
# parameter on a store holding a document read to 64 (chunk text, locations, losses) and a session with
# a turn (`rows`), so that a query that ignored the id would find something.
CALLS = {
    ("add_chunks", "document_id"): lambda s, rows, i: s.add_chunks(i, [ChunkText(64, 80, "more text")]),
    ("add_locations", "document_id"): lambda s, rows, i: s.add_locations(i, [Location.page_range(64, 80, 2)]),
    ("add_snapshot", "document_id"): lambda s, rows, i: s.add_snapshot(i, 128, state_bytes(2), MODEL, 1),
    ("add_turn", "session_id"): lambda s, rows, i: s.add_turn(i, None, "q", "a", {}),
    ("add_turn", "parent_turn_id"): lambda s, rows, i: s.add_turn(rows["session"], i, "q", "a", {}),
    ("add_turn", "snapshot_id"): lambda s, rows, i: s.add_turn(rows["session"], None, "q", "a", {}, i),
    ("chunk_losses", "document_id"): lambda s, rows, i: s.chunk_losses(i, MODEL),
    ("claim_document", "document_id"): lambda s, rows, i: s.claim_document(i, "worker-1", 30),
    ("create_session", "document_id"): lambda s, rows, i: s.create_session(i, 0),
    ("create_session", "snapshot_id"): lambda s, rows, i: s.create_session(rows["document"], 64, i),
    ("delete_document", "document_id"): lambda s, rows, i: s.delete_document(i),
    ("delete_session", "session_id"): lambda s, rows, i: s.delete_session(i),
    ("describe_range", "document_id"): lambda s, rows, i: s.describe_range(i, 0, 64),
    ("get_chunks", "document_id"): lambda s, rows, i: s.get_chunks(i, 0, 64),
    ("get_document", "document_id"): lambda s, rows, i: s.get_document(i),
    ("get_document_or_none", "document_id"): lambda s, rows, i: s.get_document_or_none(i),
    ("get_session", "session_id"): lambda s, rows, i: s.get_session(i),
    ("get_snapshot", "snapshot_id"): lambda s, rows, i: s.get_snapshot(i),
    ("get_turn", "turn_id"): lambda s, rows, i: s.get_turn(i),
    ("heartbeat", "document_id"): lambda s, rows, i: s.heartbeat(i, "worker-0", 30),
    ("latest_snapshot_at", "document_id"): lambda s, rows, i: s.latest_snapshot_at(i, 100),
    ("list_children", "session_id"): lambda s, rows, i: s.list_children(i),
    ("list_children", "parent_turn_id"): lambda s, rows, i: s.list_children(rows["session"], i),
    ("list_sessions", "document_id"): lambda s, rows, i: s.list_sessions(i),
    ("list_snapshots", "document_id"): lambda s, rows, i: s.list_snapshots(i, kind="turn"),
    ("list_turns", "session_id"): lambda s, rows, i: s.list_turns(i),
    ("load_snapshot_bytes", "snapshot_id"): lambda s, rows, i: s.load_snapshot_bytes(i),
    ("locate", "document_id"): lambda s, rows, i: s.locate(i, 3),
    ("locations_between", "document_id"): lambda s, rows, i: s.locations_between(i, 0, 64),
    ("position_of_char", "document_id"): lambda s, rows, i: s.position_of_char(i, 0),
    ("position_of_line", "document_id"): lambda s, rows, i: s.position_of_line(i, "a.py", 1),
    ("position_of_page", "document_id"): lambda s, rows, i: s.position_of_page(i, 1),
    ("put_chunk_losses", "document_id"): lambda s, rows, i: s.put_chunk_losses(i, MODEL, [ChunkLoss(0, 64, 1.5)]),
    ("release_document", "document_id"): lambda s, rows, i: s.release_document(i, "worker-0"),
    ("rename_document", "document_id"): lambda s, rows, i: s.rename_document(i, "renamed.txt"),
    ("rename_session", "session_id"): lambda s, rows, i: s.rename_session(i, "renamed"),
    ("search", "document_id"): lambda s, rows, i: s.search("lighthouse", document_id=i),
    ("set_status", "document_id"): lambda s, rows, i: s.set_status(i, "complete"),
    ("set_token_count", "document_id"): lambda s, rows, i: s.set_token_count(i, 64),
    ("thin_snapshots", "document_id"): lambda s, rows, i: s.thin_snapshots(i, 16),
    ("token_ids", "document_id"): lambda s, rows, i: s.token_ids(i, 0, 64),
    ("turn_path", "turn_id"): lambda s, rows, i: s.turn_path(i),
}
ROW_ID_PARAMETERS = {"document_id", "session_id", "turn_id", "snapshot_id", "parent_turn_id"}
MISSING = 987_654  # a well-formed id no row has
IMPOSSIBLE = [0, -1, 2**31, 2**63, 10**30]


def stored_rows(store) -> dict[str, int]:
    doc = store.create_document("b" * 64, "atlas.pdf", "pdf", "/data/atlas.pdf", "tok-0", MODEL)
    store.add_snapshot(doc.id, 64, state_bytes(1), MODEL, 1,
                       chunks=[ChunkText(0, 64, "a lighthouse on page one", tuple(range(64)))],
                       locations=[Location.page_range(0, 64, 1), Location.file_lines(0, 64, "a.py", 1, 9),
                                  Location.text_span(0, 64, 0, 24)])
    store.put_chunk_losses(doc.id, MODEL, [ChunkLoss(0, 64, 1.0)])
    assert store.claim_document(doc.id, "worker-0", 30)
    session = store.create_session(doc.id, 64)
    turn = store.add_turn(session.id, None, "Where?", "Page one.", {}, state=StatePayload(70, state_bytes(3), MODEL, 1))
    return {"document": doc.id, "session": session.id, "turn": turn.id}


def outcome(call, store, rows: dict[str, int], row_id: int) -> tuple:
    """What the call gives for `row_id`: ("returned", value) or ("raised", error class, message)."""
    try:
        return ("returned", call(store, rows, row_id))
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return ("raised", type(exc), str(exc))


def test_every_method_taking_a_row_id_is_checked() -> None:
    taking = {(name, parameter) for name, method in inspect.getmembers(Store, inspect.isfunction)
              if not name.startswith("_") for parameter in inspect.signature(method).parameters
              if parameter in ROW_ID_PARAMETERS}
    assert taking == set(CALLS)


@pytest.mark.parametrize("method", [f"{name}:{parameter}" for name, parameter in CALLS])
def test_an_impossible_id_gives_what_a_missing_one_gives(store, method: str) -> None:
    call = CALLS[tuple(method.split(":"))]
    rows = stored_rows(store)
    missing = outcome(call, store, rows, MISSING)
    assert missing[0] == "returned" or issubclass(missing[1], StorageError), missing
    for row_id in IMPOSSIBLE:
        got = outcome(call, store, rows, row_id)
        assert store.url not in str(got) and "out of range" not in str(got) and "Overflow" not in str(got)
        named = missing if missing[0] == "returned" else (*missing[:2], missing[2].replace(str(MISSING), str(row_id)))
        assert got == named, f"{method} with id {row_id}"
    assert store.get_document(rows["document"]).claimed_by == "worker-0"  # the stored rows are untouched
