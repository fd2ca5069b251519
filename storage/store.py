"""`Store`: the one object callers hold. Thread-safe; every method is its own unit of work."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from megalodoc.storage.blob_encoding import DEFAULT_ENCODING, check_encoding
from megalodoc.storage.compaction import CompactionMixin
from megalodoc.storage.db_url import display_url
from megalodoc.storage.documents import DocumentsMixin
from megalodoc.storage.engine import PragmaValue, create_store_engine, resolve_url, sqlite_file
from megalodoc.storage.errors import StorageError
from megalodoc.storage.locations import LocationsMixin
from megalodoc.storage.losses import LossesMixin
from megalodoc.storage.maintenance import MaintenanceMixin
from megalodoc.storage.schema import (
    SCHEMA_VERSION,
    SchemaStatus,
    head_revision,
    known_revisions,
    require_current,
    schema_error,
    schema_status,
    upgrade,
)
from megalodoc.storage.search import SearchMixin
from megalodoc.storage.sessions import SessionsMixin
from megalodoc.storage.snapshots import SnapshotsMixin
from megalodoc.storage.target_check import SqliteTarget, inspect_sqlite_target, refusal
from megalodoc.storage.unit import UnitOfWork
from megalodoc.storage.wal_checkpointer import (
    BACKSTOP_AUTOCHECKPOINT,
    CHECKPOINT_INTERVAL_S,
    WalCheckpointer,
    check_interval,
)


class Store(
    DocumentsMixin, SnapshotsMixin, LocationsMixin, SearchMixin, SessionsMixin, LossesMixin, MaintenanceMixin,
    CompactionMixin,
):
    """Documents, snapshots, locations, chunk text and sessions in one database. Build with `open_store`."""

    def __init__(
        self, engine: Engine, url: str, state_encoding: str = DEFAULT_ENCODING,
        checkpoint_interval: float | None = None,
    ) -> None:
        """checkpoint_interval: for a SQLite file, the background WAL checkpoints' interval; else None."""
        self._engine = engine
        self.state_encoding = check_encoding(state_encoding)  # how new state blobs are stored (lossless)
        self.url = display_url(url)
        self.dialect = engine.dialect.name
        where = f"database {self.url}"
        self.checkpointer = None if checkpoint_interval is None else WalCheckpointer(engine, where, checkpoint_interval)
        self._uow = UnitOfWork(engine, where, None if self.checkpointer is None else self.checkpointer.wrote)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for storage's own tools and tests; callers use the methods)."""
        return self._engine

    def close(self) -> None:
        """Stop the background checkpoints and close every pooled connection (the last connection to a
        SQLite file checkpoints it and removes its WAL). The store must not be used afterwards."""
        if self.checkpointer is not None:
            self.checkpointer.close()
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url})"


def open_store(
    url: str | None = None,
    *,
    create: bool = True,
    sqlite_pragmas: Mapping[str, PragmaValue] | None = None,
    state_encoding: str = DEFAULT_ENCODING,
    checkpoint_interval: float = CHECKPOINT_INTERVAL_S,
) -> Store:
    """Open the store at `url` (default: $MEGALODOC_DB, else ./megalodoc.db; a plain path means SQLite).
    Checks the schema: a brand-new empty database gets the current schema (when `create`); one behind
    raises `SchemaBehindError` saying to run `megalodoc db upgrade`; one from a newer megalodoc raises
    `SchemaNewerError`. `sqlite_pragmas` adds pragmas set on every SQLite connection. `state_encoding`
    says how new state blobs are kept at rest ("planes4", lossless and about 14% smaller for model
    states, or "raw"); any stored encoding is read back. A SQLite file's WAL is checkpointed by a
    background thread at most every `checkpoint_interval` seconds after writes, not inside commits (up to
    a 16 MiB backstop, `wal_checkpointer.py`)."""
    check_encoding(state_encoding)
    check_interval(checkpoint_interval)
    resolved = resolve_url(url)
    path = sqlite_file(resolved)
    if not create and path is not None and not path.exists():
        raise StorageError(f"no database at {path}")
    if path is not None:
        target = _inspect(path, for_writing=True)  # refuses before the engine switches the file to WAL
        if target.state == "behind":
            raise schema_error(SchemaStatus("behind", target.revision, head_revision(), display_url(resolved)))
        sqlite_pragmas = {**BACKSTOP_AUTOCHECKPOINT, **(sqlite_pragmas or {})}  # with the checkpointer below
    engine = create_store_engine(resolved, sqlite_pragmas)
    try:
        require_current(engine, resolved, create_if_empty=create)
    except DBAPIError as exc:
        engine.dispose()
        raise StorageError(f"cannot open database {display_url(resolved)}: {exc.orig}") from exc
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, resolved, state_encoding, None if path is None else checkpoint_interval)


def _inspect(path: Path, *, for_writing: bool, refuse: bool = True) -> SqliteTarget:
    """What the SQLite file at `path` holds (see `target_check`); raises the refusal unless it is usable."""
    head = head_revision()
    target = inspect_sqlite_target(path, known_revisions(), head, for_writing=for_writing)
    error = refusal(target, head) if refuse else None
    if error is not None:
        raise error
    return target


def upgrade_database(url: str | None = None) -> tuple[str | None, str]:
    """Bring the database at `url` (resolved like `open_store`) to this code's schema, creating it when
    empty. Returns (revision before, revision after). Refuses a database from a newer megalodoc."""
    resolved = resolve_url(url)
    path = sqlite_file(resolved)
    if path is not None:
        _inspect(path, for_writing=True)
    engine = create_store_engine(resolved)
    try:
        return upgrade(engine, resolved)
    except DBAPIError as exc:
        raise StorageError(f"cannot upgrade database {display_url(resolved)}: {exc.orig}") from exc
    finally:
        engine.dispose()


def database_status(url: str | None = None) -> SchemaStatus:
    """Where the database at `url` stands against this code's schema (changes nothing)."""
    resolved = resolve_url(url)
    path = sqlite_file(resolved)
    if path is not None and not path.exists():
        return SchemaStatus("missing", None, SCHEMA_VERSION, display_url(resolved))
    if path is not None:  # read from the file alone: a status never switches it to WAL
        target = _inspect(path, for_writing=False, refuse=False)
        return SchemaStatus(target.state, target.revision, head_revision(), display_url(resolved), target.detail)
    engine = create_store_engine(resolved)
    try:
        return schema_status(engine, resolved)
    except DBAPIError as exc:
        raise StorageError(f"cannot read database {display_url(resolved)}: {exc.orig}") from exc
    finally:
        engine.dispose()
