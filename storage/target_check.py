"""Judge a SQLite file before the store opens it for writing, so that a refused file stays byte-identical.

Opening a SQLite file through the engine switches it to WAL mode (header bytes change, `-wal` and `-shm`
files appear) before the schema can be read. `inspect_sqlite_target` therefore looks first, touching
nothing: `os.stat` for the kind of path, the 100-byte header, then a read-only connection
(`immutable=1`, or `mode=ro` when the database's own `-wal` and `-shm` are already there, so its latest
commits are seen without creating anything). It says what the file is:

    absent      no file yet (it will be created)
    empty       an empty file, or a SQLite database without tables
    current / behind / newer   a megalodoc store at this code's schema revision, an older or a newer one
    foreign     another application's SQLite database (tables, no megalodoc schema version)
    damaged     a SQLite header, but the database cannot be read (truncated or overwritten)
    not-database  a file that is not a SQLite database at all

and refuses up front, with `UnusableTargetError`, paths that cannot hold a store: a folder, a special
file, a file under /proc, /sys or /dev, a read-only file or a file in a folder that cannot be written.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from megalodoc.storage.errors import SchemaError, SchemaNewerError, StorageError

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100
SPECIAL_ROOTS = ("/proc", "/sys", "/dev")


class UnusableTargetError(StorageError):
    """The path cannot hold a store (a folder, a special file, read-only); nothing was written."""


class NotADatabaseError(StorageError):
    """The file is not a SQLite database; it was left untouched."""


class DamagedDatabaseError(StorageError):
    """The file has a SQLite header but cannot be read as a database; it was left untouched."""


@dataclass(frozen=True)
class SqliteTarget:
    """What a SQLite path holds. `state`: absent, empty, current, behind, newer, foreign, damaged,
    not-database; `revision`: the schema revision found (megalodoc stores); `tables`: the table names
    found; `detail`: why the file is damaged or not a database."""

    path: Path
    state: str
    revision: str | None = None
    tables: tuple[str, ...] = ()
    detail: str = ""


def inspect_sqlite_target(path: Path, known_revisions: frozenset[str], head: str, *,
                          for_writing: bool = True) -> SqliteTarget:
    """What `path` holds, changing nothing. Raises UnusableTargetError for paths that cannot be a store
    (with `for_writing`, also read-only files and folders where SQLite cannot create its `-wal`)."""
    shown = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        parent = path.parent
        if for_writing and parent.is_dir() and not _can_write(parent):
            raise UnusableTargetError(f"cannot create database {shown}: folder {parent} is not writable") from None
        return SqliteTarget(path, "absent")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnusableTargetError(f"cannot use {shown} as a database: symlink loop") from None
        raise UnusableTargetError(f"cannot use {shown} as a database: {exc.strerror or exc}") from None
    real = os.path.realpath(path)
    if any(real == root or real.startswith(root + "/") for root in SPECIAL_ROOTS):
        raise UnusableTargetError(f"cannot use {shown} as a database: it lies in the kernel or device file "
                                  f"system ({real}); give a regular file")
    if stat.S_ISDIR(info.st_mode):
        raise UnusableTargetError(f"cannot use {shown} as a database: it is a folder; give a file inside it, "
                                  f"e.g. {path / 'megalodoc.db'}")
    if not stat.S_ISREG(info.st_mode):
        raise UnusableTargetError(f"cannot use {shown} as a database: not a regular file")
    if for_writing:
        _check_writable(path, info)
    if info.st_size == 0:
        return SqliteTarget(path, "empty")
    with open(path, "rb") as handle:
        header = handle.read(HEADER_BYTES)
    if not header.startswith(SQLITE_MAGIC):
        return SqliteTarget(path, "not-database", detail=f"it starts with {header[:16]!r}")
    # With a write-ahead log beside it the file may be mid-checkpoint by another process: let SQLite judge.
    problem = "" if Path(f"{path}-wal").exists() else _header_problem(header, info.st_size)
    if problem:
        return SqliteTarget(path, "damaged", detail=problem)
    return _read_schema(path, header, known_revisions, head)


def _check_writable(path: Path, info: os.stat_result) -> None:
    if not info.st_mode & 0o222 or not _can_write(path):
        raise UnusableTargetError(
            f"cannot use {path} as a database: the file is read-only (mode {stat.filemode(info.st_mode)}); "
            "megalodoc writes to its store: make it writable or give another file")
    sidecars = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    if not all(sidecar.exists() for sidecar in sidecars) and not _can_write(path.parent):
        raise UnusableTargetError(f"cannot use {path} as a database: its folder {path.parent} is not writable "
                                  "(SQLite keeps its write-ahead log beside the file)")


def _can_write(path: Path) -> bool:
    """Whether this process (its effective user, as SQLite will open files) may write `path`."""
    if os.access in os.supports_effective_ids:
        return os.access(path, os.W_OK, effective_ids=True)
    return os.access(path, os.W_OK)


def _header_problem(header: bytes, size: int) -> str:
    if len(header) < HEADER_BYTES:
        return f"truncated: {size} bytes, shorter than a SQLite header"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"invalid page size {page_size} in the header"
    if size % page_size:
        return f"truncated: {size:,} bytes is not a whole number of {page_size}-byte pages"
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and pages * page_size > size:  # the page count is valid when these agree
        return f"truncated: the header counts {pages:,} pages of {page_size} bytes but the file holds {size:,} bytes"
    return ""


def _read_only_uri(path: Path, header: bytes) -> str:
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    base = "file:" + quote(str(path.resolve()))
    if header[18] == 2 and wal.exists() and shm.exists():
        return base + "?mode=ro"  # a WAL database in use: read its log too; both files exist, none is created
    return base + "?immutable=1"  # nothing to merge: read the file alone, with no locks and no side files


def _read_schema(path: Path, header: bytes, known_revisions: frozenset[str], head: str) -> SqliteTarget:
    try:
        connection = sqlite3.connect(_read_only_uri(path, header), uri=True)
    except sqlite3.Error as exc:
        return SqliteTarget(path, "damaged", detail=str(exc))
    try:
        tables = tuple(name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"))
        if not tables:
            return SqliteTarget(path, "empty")
        if "alembic_version" not in tables:
            return SqliteTarget(path, "foreign", tables=tables)
        revisions = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
        for table in tables:  # every table's first page is readable (cheap; catches overwritten roots)
            connection.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchall()
    except sqlite3.DatabaseError as exc:
        return SqliteTarget(path, "damaged", detail=str(exc))
    finally:
        connection.close()
    if not revisions:
        return SqliteTarget(path, "empty", tables=tables)
    revision = ",".join(revisions)
    if any(rev not in known_revisions for rev in revisions):
        return SqliteTarget(path, "newer", revision, tables)
    return SqliteTarget(path, "current" if revisions == [head] else "behind", revision, tables)


def refusal(target: SqliteTarget, head: str) -> StorageError | None:
    """The error that refuses `target` (None when a store can use it: absent, empty, current, behind)."""
    shown = target.path
    if target.state == "not-database":
        return NotADatabaseError(f"{shown}: not a database ({target.detail}); nothing was changed. Point --db "
                                 "(or MEGALODOC_DB) at a megalodoc database or a new file")
    if target.state == "damaged":
        return DamagedDatabaseError(f"{shown}: a damaged SQLite database ({target.detail}); nothing was changed. "
                                    "Restore it from a backup, or point --db at another file")
    if target.state == "foreign":
        listed = ", ".join(target.tables[:6]) + (", ..." if len(target.tables) > 6 else "")
        return SchemaError(f"{shown}: another application's SQLite database, not megalodoc's (tables: "
                           f"{listed}; no megalodoc schema version); nothing was changed. Point --db (or "
                           "MEGALODOC_DB) at a new file")
    if target.state == "newer":
        return SchemaNewerError(f"{shown}: a store from a newer megalodoc (schema revision {target.revision}; "
                                f"this version knows up to {head}); nothing was changed. Upgrade megalodoc")
    return None
