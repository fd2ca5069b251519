"""Alembic environment. `megalodoc db upgrade` runs it with an open connection. Alembic's own command
line works too, given a config whose script_location is this folder; `-x url=...` names the database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from megalodoc.storage.engine import create_store_engine, resolve_url
from megalodoc.storage.models import Base

# Any constant: all upgraders of one PostgreSQL database take this transaction-level lock in turn.
_PG_MIGRATION_LOCK = 0x6D65_6761


def _run(connection) -> None:  # noqa: ANN001
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=sqlite,  # SQLite cannot ALTER most things: batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    engine = create_store_engine(resolve_url(url))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run `megalodoc db upgrade`")
run_migrations_online()
