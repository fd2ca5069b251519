"""A session or document deleted by another connection while this one writes under it: the write waits
for the delete and then finds nothing, `NotFoundError`, not a foreign-key `ConflictError`. The delete
is held open (uncommitted) in a second connection for a moment, the way a concurrent delete holds it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from storage_testkit import psycopg_conninfo
from test_sessions import read_document, turn_state

from megalodoc.storage import NotFoundError, Store

HOLD_S = 1.5  # how long the other connection keeps its delete uncommitted


def hold_delete(db_url: str, statements: list[tuple[str, int]]) -> Callable[[], None]:
    """Run the deletes in a second connection, keep them uncommitted HOLD_S seconds, then commit; returns
    once they ran (the join function waits for the commit)."""
    import psycopg

    schema = db_url.split("search_path%3D", 1)[1]
    ran = threading.Event()

    def run() -> None:
        with psycopg.connect(psycopg_conninfo(db_url)) as connection:  # one transaction, committed at exit
            connection.execute(f"SET search_path TO {schema}")
            for sql, row_id in statements:
                connection.execute(sql, (row_id,))
            ran.set()
            time.sleep(HOLD_S)

    thread = threading.Thread(target=run)
    thread.start()
    assert ran.wait(30)
    return thread.join


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_turn_on_a_session_deleted_meanwhile_is_not_found(store: Store, db_url: str) -> None:
    document_id = read_document(store)
    session = store.create_session(document_id, 128)
    first = store.add_turn(session.id, None, "q1", "a1", {}, state=turn_state(1))
    joined = hold_delete(db_url, [("DELETE FROM turns WHERE session_id = %s", session.id),
                                  ("DELETE FROM sessions WHERE id = %s", session.id)])
    try:
        with pytest.raises(NotFoundError, match=f"no session with id {session.id}"):
            store.add_turn(session.id, first.id, "q2", "a2", {}, state=turn_state(2))
    finally:
        joined()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_session_on_a_document_deleted_meanwhile_is_not_found(store: Store, db_url: str) -> None:
    document_id = read_document(store)
    snapshot = store.latest_snapshot_at(document_id, 128)
    assert snapshot is not None
    joined = hold_delete(db_url, [("SELECT id FROM documents WHERE id = %s FOR UPDATE", document_id),
                                  ("DELETE FROM snapshots WHERE document_id = %s", document_id),
                                  ("DELETE FROM chunks WHERE document_id = %s", document_id),
                                  ("DELETE FROM locations WHERE document_id = %s", document_id),
                                  ("DELETE FROM documents WHERE id = %s", document_id)])
    try:
        with pytest.raises(NotFoundError, match=f"no document with id {document_id}"):
            store.create_session(document_id, 128, snapshot.id)
    finally:
        joined()
