"""Helpers shared by the storage tests (importable because conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import os
import random
import sqlite3
import uuid

import pytest

from megalodoc.storage import DocumentRecord, Store

POSTGRES_ENV = "MEGALODOC_TEST_POSTGRES_URL"
MODEL = "model-fingerprint-0"
TOKENIZER = "tokenizer-fingerprint-0"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL variant: set {POSTGRES_ENV} (e.g. `source .ci/postgres.sh`) to run it")
    return url


def psycopg_conninfo(url: str) -> str:
    """A SQLAlchemy postgresql+psycopg URL as a libpq URI (query string dropped)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1).split("?", 1)[0]


def raw_execute(db_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run SQL past the store with the plain driver (sqlite3 / psycopg): to damage or inspect rows."""
    if db_url.startswith("sqlite:///"):
        connection = sqlite3.connect(db_url[len("sqlite:///") :])
        try:
            rows = connection.execute(sql, params).fetchall()
            connection.commit()
            return rows
        finally:
            connection.close()
    import psycopg

    schema = db_url.split("search_path%3D", 1)[1]
    with psycopg.connect(psycopg_conninfo(db_url), autocommit=True) as connection:
        connection.execute(f"SET search_path TO {schema}")
        cursor = connection.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []


def new_document(
    store: Store, name: str = "book.pdf", kind: str = "pdf", content_hash: str | None = None
) -> DocumentRecord:
    """A fresh "ingesting" document read by MODEL."""
    return store.create_document(
        content_hash or uuid.uuid4().hex, name, kind, f"/data/{name}", TOKENIZER, MODEL, token_count=100_000
    )


def state_bytes(seed: int, size: int = 4096) -> bytes:
    """Deterministic pseudo-random bytes standing in for a serialized state."""
    return random.Random(seed).randbytes(size)
