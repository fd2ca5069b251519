"""An id no row can have (typed into a page or given on the command line) is "not found", on both
backends: one past the id column's range failed inside the driver before (OverflowError on SQLite,
"integer out of range" on PostgreSQL, shown to web users with the database address)."""

from __future__ import annotations

import pytest

from megalodoc.storage import NotFoundError, StorageError
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
