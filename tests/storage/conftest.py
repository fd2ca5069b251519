"""Storage test fixtures. Every test taking `db_url` or `store` runs on SQLite and on PostgreSQL; the
PostgreSQL variant is skipped unless MEGALODOC_TEST_POSTGRES_URL names a server (`source .ci/postgres.sh`
starts one). Each PostgreSQL test gets its own schema, dropped afterwards."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from storage_testkit import BACKENDS, postgres_base_url, psycopg_conninfo  # noqa: E402

from megalodoc.storage import Store, open_store  # noqa: E402


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database on `backend`."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    import psycopg

    base = postgres_base_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(psycopg_conninfo(base), autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    yield f"{base}?options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(psycopg_conninfo(base), autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()
