"""Units of work: one database session per operation, retried when the database is busy, with
disk-full and lock errors turned into clear storage errors. Everything inside runs in one transaction."""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from megalodoc.storage.engine import READ_OPTION
from megalodoc.storage.errors import ConflictError, StorageError, StorageFullError
from megalodoc.storage.interrupt_shield import interrupt_waiting, shielded

T = TypeVar("T")

# Attempts for a unit of work that meets a busy database (after SQLite's own busy timeout, or a
# PostgreSQL serialization failure / deadlock). Backoff doubles from 50 ms up to 2 s, with jitter.
MAX_ATTEMPTS = 8
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")
_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_FULL_SQLSTATES = {"53100"}  # disk_full


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def is_busy(exc: BaseException) -> bool:
    """True when `exc` says the database was busy and the whole unit of work can simply be retried."""
    if not isinstance(exc, DBAPIError):
        return False
    if _sqlstate(exc) in _RETRY_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and any(m in str(exc.orig).lower() for m in _BUSY_MESSAGES)


def is_full(exc: BaseException) -> bool:
    """True when `exc` says the disk or the database's size limit is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if _sqlstate(exc) in _FULL_SQLSTATES:
        return True
    text = str(exc.orig).lower()
    return "database or disk is full" in text or "no space left on device" in text


class UnitOfWork:
    """Runs functions of a `Session` as read-only or write transactions."""

    def __init__(self, engine: Engine, where: str, after_write: Callable[[], None] | None = None) -> None:
        self._where = where
        self._after_write = after_write  # called after each committed write (the WAL checkpointer's cue)
        self._write = sessionmaker(engine, expire_on_commit=False)
        self._read = sessionmaker(engine.execution_options(**{READ_OPTION: True}), expire_on_commit=False)

    def read(self, work: Callable[[Session], T]) -> T:
        """Run `work` in a read transaction (never blocks on a SQLite writer in WAL mode)."""
        with shielded():  # a Ctrl-C meanwhile is raised when the work has ended, not inside it
            return self._run(self._read, work)

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one write transaction: all of it is committed, or none of it."""
        with shielded():  # the checkpointer's cue too: it takes a lock
            result = self._run(self._write, work)
            if self._after_write is not None:
                self._after_write()
            return result

    def _run(self, maker: sessionmaker, work: Callable[[Session], T]) -> T:
        delay = 0.05
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with maker() as session, session.begin():
                    return work(session)
            except (DBAPIError, OSError) as exc:
                if is_full(exc):
                    raise StorageFullError(
                        f"the disk holding {self._where} is full (or the database reached its size limit); "
                        "the write was rolled back and earlier data is intact. Free some space and retry."
                    ) from exc
                if isinstance(exc, IntegrityError):
                    raise ConflictError(f"the write conflicts with data in {self._where}: {exc.orig}") from exc
                if isinstance(exc, OSError):
                    raise
                if not is_busy(exc):
                    raise StorageError(f"{self._where} failed: {exc.orig}") from exc
                if attempt == MAX_ATTEMPTS or interrupt_waiting():
                    raise StorageError(
                        f"{self._where} stayed busy through {MAX_ATTEMPTS} attempts: {exc.orig}"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(2.0, delay * 2)
        raise AssertionError("unreachable")
