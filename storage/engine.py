"""Engine setup: database URL resolution, SQLite pragmas on every connection, explicit transactions.

SQLite is driven in autocommit mode at the driver level and every transaction is begun here: read units
of work use a plain (deferred) BEGIN, so in WAL mode they never wait for a writer; write units use
BEGIN IMMEDIATE, so they take the write lock up front (waiting up to the busy timeout) instead of failing
half-way with "database is locked" when two writers meet. DDL is therefore transactional too.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, unquote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from megalodoc.storage.db_url import display_url, parse_url
from megalodoc.storage.errors import StorageError

DEFAULT_DB_FILE = "megalodoc.db"
DB_ENV_VAR = "MEGALODOC_DB"
# How long SQLite waits for another writer's lock before giving up with "database is locked" (then the
# unit of work is retried, see `unit.py`). Long enough for a 16 MiB snapshot commit on a slow disk.
BUSY_TIMEOUT_MS = 15_000
# Cap on the WAL file left behind after checkpoints; large snapshots would otherwise keep it huge.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
READ_OPTION = "megalodoc_read_only"
# Pause between attempts to switch a new file to WAL while another connection holds it (see _switch_to_wal)
_WAL_RETRY_SECONDS = 0.01

PragmaValue = int | str


def resolve_url(url: str | None = None) -> str:
    """The database URL to use: `url`, else $MEGALODOC_DB, else the SQLite file megalodoc.db in the current
    directory. A value without "://" is a SQLite file path; postgresql:// and postgres:// get psycopg 3.
    A SQLite file is made absolute now, so that connections opened later reach the same file whatever the
    working folder is by then."""
    raw = url or os.environ.get(DB_ENV_VAR) or DEFAULT_DB_FILE
    if "://" not in raw:
        if raw == ":memory:":
            return "sqlite://"
        return f"sqlite:///{Path(raw).expanduser().resolve()}"
    if raw.startswith("sqlite") and not raw.startswith("sqlite:////"):
        return _absolute_sqlite_url(raw)
    for prefix in ("postgresql://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def _absolute_sqlite_url(raw: str) -> str:
    """`sqlite:///relative.db` (or a relative `file:` URI, `sqlite:///file:relative.db?uri=true`) with its
    file made absolute; anything else (memory, an absolute file, a URL SQLAlchemy cannot parse, which
    opening reports) as it is."""
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError):
        return raw
    database = parsed.database
    if not database or database == ":memory:" or os.path.isabs(database):
        return raw
    if _is_uri(database, parsed.query):
        path = _uri_file(database, parsed.query)
        if path is None or os.path.isabs(path):
            return raw
        absolute = "file:" + quote(str(Path(path).expanduser().resolve()))
        return parsed.set(database=absolute).render_as_string(hide_password=False)
    return parsed.set(database=str(Path(database).expanduser().resolve())).render_as_string(hide_password=False)


def _is_uri(database: str, query: Mapping[str, object]) -> bool:
    """Whether SQLite reads the database part as a `file:` URI: only with `uri=true` in the URL's query
    (without it, `file:x.db` is a file of that name)."""
    return database.startswith("file:") and str(query.get("uri", "")).lower() == "true"


def _uri_file(database: str, query: Mapping[str, object]) -> str | None:
    """The file a SQLite `file:` URI names (SQLAlchemy's database part, its query given apart),
    percent-decoded; None for an in-memory database."""
    rest = database[len("file:"):]
    if rest.startswith("//"):  # file://[localhost]/absolute/path
        rest = "/" + rest[2:].partition("/")[2]
    path = unquote(rest.partition("?")[0].partition("#")[0])
    if path in ("", ":memory:") or query.get("mode") == "memory":
        return None
    return path


def _missing_driver(url: str, backend: str, exc: ModuleNotFoundError) -> str:
    where = f"cannot open database {display_url(url)}: its driver ({exc.name or exc}) is not installed"
    if backend == "postgresql":
        return f"{where}; PostgreSQL needs the `postgres` extra: python3 -m pip install 'megalodoc[postgres]'"
    return f"{where}; install the driver that the URL names"


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory databases and other backends;
    `DatabaseUrlError` when `url` cannot be parsed."""
    parsed = parse_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if _is_uri(database, parsed.query):
        path = _uri_file(database, parsed.query)
        return None if path is None else Path(path).expanduser()
    return Path(database).expanduser()


def create_store_engine(url: str, sqlite_pragmas: Mapping[str, PragmaValue] | None = None) -> Engine:
    """A SQLAlchemy engine for `url` (already resolved). For SQLite: WAL, foreign keys,
    synchronous=NORMAL and a busy timeout on every connection, plus any extra `sqlite_pragmas`.
    `DatabaseUrlError` when `url` cannot be parsed."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as exc:  # the driver is an optional extra
            raise StorageError(_missing_driver(url, parsed.get_backend_name(), exc)) from exc

    database = parsed.database or ""
    file = sqlite_file(url)
    in_memory = file is None
    if file is not None and not file.parent.is_dir():
        raise StorageError(f"cannot open database {database}: directory {file.parent} does not exist")
    if in_memory:
        # One shared connection, or every connection would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    _install_sqlite_hooks(engine, dict(sqlite_pragmas or {}), wal=not in_memory)
    return engine


def _switch_to_wal(cursor: sqlite3.Cursor) -> str:
    """Put the database in WAL mode (it stays so in the file) and return the journal mode now in force.
    Switching needs the file to itself, and SQLite answers "database is locked" at once, without waiting
    the busy timeout, when other connections open a new file at the same moment; so a connection first
    reads the mode (another may have switched it already) and retries the switch until the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode == "wal":
            return mode
        try:
            return str(cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(_WAL_RETRY_SECONDS)


def _install_sqlite_hooks(engine: Engine, extra: dict[str, PragmaValue], wal: bool) -> None:
    for name, value in extra.items():
        if not name.replace("_", "").isalnum() or not str(value).replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"bad SQLite pragma {name}={value!r}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 (driver objects)
        dbapi_connection.isolation_level = None  # the driver must not open transactions on its own
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if wal:
                mode = _switch_to_wal(cursor)
                if mode != "wal":
                    raise StorageError(f"SQLite refused WAL mode (journal_mode is {mode})")
                cursor.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
            for name, value in extra.items():
                cursor.execute(f"PRAGMA {name} = {value}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001
        read_only = connection.get_execution_options().get(READ_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
