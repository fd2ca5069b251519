"""Ids of deleted documents, sessions and turns are never handed out again (SQLite: AUTOINCREMENT, from
schema 0005; PostgreSQL: sequences), and a database of schema 0004 upgrades to it with every row, id
and reference kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from storage_testkit import MODEL, new_document, raw_execute, state_bytes

from megalodoc.storage import ChunkText, SchemaError, Store, open_store, upgrade_database
from megalodoc.storage import schema as schema_module
from megalodoc.storage.engine import create_store_engine


def newest_deleted_then_new(store: Store) -> tuple[list[int], list[int]]:
    """(ids before the deletes, ids made after deleting the newest document, session and turn)."""
    old_doc = new_document(store, name="old.txt")
    session = store.create_session(old_doc.id, 0)
    turn = store.add_turn(session.id, None, "q", "a", {})
    store.delete_session(session.id)
    store.delete_document(old_doc.id)
    new_doc = new_document(store, name="new.txt")
    new_session = store.create_session(new_doc.id, 0)
    new_turn = store.add_turn(new_session.id, None, "q", "a", {})
    return [old_doc.id, session.id, turn.id], [new_doc.id, new_session.id, new_turn.id]


def schema_0004_file(path: Path) -> str:
    """The URL of a new SQLite file at schema revision 0004 (before AUTOINCREMENT)."""
    url = f"sqlite:///{path}"
    engine = create_store_engine(url)
    with engine.begin() as connection:
        command.upgrade(schema_module.alembic_config(url, connection), "0004")
    engine.dispose()
    return url


def test_the_newest_rows_ids_are_not_handed_out_again(store: Store) -> None:
    old, new = newest_deleted_then_new(store)
    assert all(n > o for o, n in zip(old, new, strict=True)), (old, new)


def test_a_schema_0004_database_upgrades_keeping_rows_ids_and_references(tmp_path: Path) -> None:
    url = schema_0004_file(tmp_path / "old.db")
    raw_execute(url, "INSERT INTO documents (id, content_hash, name, kind, status, committed_position, "
                     "tokenizer_fingerprint, model_fingerprint, created_at, updated_at) VALUES "
                     f"(1, 'h1', 'a.txt', 'text', 'ingesting', 0, 'tok', '{MODEL}', '2026-01-01', '2026-01-01'), "
                     f"(2, 'h2', 'b.txt', 'text', 'ingesting', 0, 'tok', '{MODEL}', '2026-01-01', '2026-01-01')")
    engine = create_store_engine(url)
    try:
        assert schema_module.upgrade(engine, url) == ("0004", "0005")
        with engine.connect() as connection:  # the pooled connection the upgrade ran on, with enforcement off
            assert connection.exec_driver_sql("PRAGMA foreign_keys").fetchall() == [(1,)]  # on again
    finally:
        engine.dispose()
    with open_store(url) as store:
        store.add_snapshot(1, 64, state_bytes(1), MODEL, 1, chunks=[ChunkText(0, 64, "lighthouse keepers")])
        session = store.create_session(1, 64)
        first = store.add_turn(session.id, None, "q", "a", {})
        store.add_turn(session.id, first.id, "q2", "a2", {})
        assert [d.name for d in store.list_documents()] == ["a.txt", "b.txt"]
        assert [hit.document_id for hit in store.search("lighthouse")] == [1]
        store.delete_document(2)
        assert new_document(store, name="c.txt").id == 3  # 2 is not handed out again
    for table in ("documents", "sessions", "turns"):
        [(sql,)] = raw_execute(url, "SELECT sql FROM sqlite_master WHERE name = ?", (table,))
        assert "AUTOINCREMENT" in sql, sql
    assert raw_execute(url, "PRAGMA foreign_key_check") == []


def test_an_upgrade_that_would_leave_a_broken_reference_changes_nothing(tmp_path: Path) -> None:
    url = schema_0004_file(tmp_path / "broken.db")
    # a session of a document that is not there (written past enforcement, as a damaged file may hold it)
    raw_execute(url, "INSERT INTO sessions (id, document_id, position, created_at, updated_at) "
                     "VALUES (1, 99, 0, '2026-01-01', '2026-01-01')")
    with pytest.raises(SchemaError, match=r"would leave 1 broken reference\(s\).*nothing was changed"):
        upgrade_database(url)
    assert raw_execute(url, "SELECT version_num FROM alembic_version") == [("0004",)]
    [(sql,)] = raw_execute(url, "SELECT sql FROM sqlite_master WHERE name = 'sessions'")
    assert "AUTOINCREMENT" not in sql
