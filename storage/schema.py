"""Schema versioning through Alembic: the code's head revision, the database's revision, upgrades.

`SCHEMA_VERSION` is the Alembic head revision this code reads and writes. A database behind it must be
upgraded (`megalodoc db upgrade`); one ahead of it (written by a newer megalodoc) is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from megalodoc.storage.db_url import display_url
from megalodoc.storage.errors import SchemaBehindError, SchemaError, SchemaNewerError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SCHEMA_VERSION = "0005"
VERSION_TABLE = "alembic_version"
# Alembic keeps the running migration in module-level state: one migration per process at a time.
_ALEMBIC_LOCK = threading.Lock()
OWN_TABLES = frozenset({"documents", "locations", "chunks", "state_blobs", "snapshots", "sessions", "turns",
                        "chunk_losses"})


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands. `state` is one of: missing (no SQLite file), empty, current,
    behind, newer, foreign; for SQLite files also damaged and not-database."""

    state: str
    current: str | None
    head: str
    url: str
    detail: str = ""
    """Why a SQLite file is damaged or not a database (states `damaged`, `not-database`)."""


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    """An Alembic configuration for our migrations folder (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str:
    """The schema revision this code writes (read at call time)."""
    return SCHEMA_VERSION


def known_revisions() -> frozenset[str]:
    """Every schema revision this code's migrations know."""
    return frozenset(revision.revision for revision in _script().walk_revisions())


def schema_status(engine: Engine, url: str) -> SchemaStatus:
    """Inspect the database at `engine` and compare its revision with the code's."""
    script = _script()
    head = script.get_current_head()
    if head != SCHEMA_VERSION:
        raise SchemaError(f"migrations folder head is {head}, code expects {SCHEMA_VERSION}: broken install")
    shown = display_url(url)
    with engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        if VERSION_TABLE not in tables:
            state = "empty" if not tables else "foreign"
            return SchemaStatus(state, None, head, shown)
        heads = MigrationContext.configure(connection).get_current_heads()
        connection.rollback()
    if not heads:
        return SchemaStatus("empty" if not (tables & OWN_TABLES) else "foreign", None, head, shown)
    known = {revision.revision for revision in script.walk_revisions()}
    current = ",".join(heads)
    if any(rev not in known for rev in heads):
        return SchemaStatus("newer", current, head, shown)
    return SchemaStatus("current" if heads == (head,) else "behind", current, head, shown)


def require_current(engine: Engine, url: str, create_if_empty: bool = True) -> SchemaStatus:
    """Raise a clear `SchemaError` unless the database is at `SCHEMA_VERSION`; create the schema in a
    brand-new empty database when `create_if_empty`."""
    status = schema_status(engine, url)
    if status.state == "current":
        return status
    if status.state == "empty" and create_if_empty:
        upgrade(engine, url)
        return schema_status(engine, url)
    raise schema_error(status)


def upgrade(engine: Engine, url: str) -> tuple[str | None, str]:
    """Bring the database to the code's head revision. Returns (revision before, revision after)."""
    with _ALEMBIC_LOCK:
        status = schema_status(engine, url)
        if status.state in ("newer", "foreign"):
            raise schema_error(status)
        if status.state != "current":
            with engine.connect() as connection, _sqlite_foreign_keys_off(connection):
                with connection.begin():  # one transaction; SQLite: BEGIN IMMEDIATE serializes openers
                    command.upgrade(alembic_config(url, connection), "head")
                    _check_references(connection, status.url)
    return status.current, SCHEMA_VERSION


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: foreign key enforcement off while migrations rebuild tables that others refer to (SQLite's
    own procedure for such changes; the pragma works only outside a transaction, so it goes to the
    driver before the migration's transaction begins). Back on afterwards, for the pooled connection."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


def _check_references(connection: Connection, shown: str) -> None:
    """SQLite: every reference still holds after the migrations (checked before they commit)."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise SchemaError(f"upgrading database {shown} would leave {len(broken)} broken reference(s) (the first: "
                          f"{tuple(broken[0])}); nothing was changed")


def schema_error(status: SchemaStatus) -> SchemaError:
    if status.state == "behind":
        return SchemaBehindError(
            f"database {status.url} is at schema revision {status.current}, but this megalodoc needs "
            f"{status.head}: run `megalodoc db upgrade --db {status.url}` (back the file up first)"
        )
    if status.state == "newer":
        return SchemaNewerError(
            f"database {status.url} has schema revision {status.current}, which this megalodoc does not "
            f"know (it knows up to {status.head}): it was written by a newer megalodoc. Upgrade megalodoc; "
            "this version will not open it, so nothing in it is changed."
        )
    if status.state == "foreign":
        return SchemaError(
            f"database {status.url} holds tables that are not megalodoc's and no schema version: "
            "point --db (or MEGALODOC_DB) at a new file or an empty database"
        )
    return SchemaError(f"database {status.url} has no megalodoc schema: run `megalodoc db upgrade --db {status.url}`")
