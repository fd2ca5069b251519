"""SQLite WAL checkpoints on a background thread, off the threads that commit.

In WAL mode a commit appends its pages to the `-wal` file; a checkpoint copies them into the database
file and syncs both (synchronous=NORMAL). SQLite's default runs the checkpoint inside whichever commit
takes the WAL past 1,000 pages, so about every 28th snapshot of an ingest (about 140 KB each) paid for
copying and syncing some 4 MB. With this thread a snapshot of an ingest took 9-31% less time (README,
"Snapshots: spacing, size and cost").

A file-backed store's connections therefore raise wal_autocheckpoint to a backstop (BACKSTOP_PAGES), and
this thread checkpoints instead: after a write, at most once per `interval` seconds while writes keep
coming, on a pooled connection of its own. A PASSIVE checkpoint waits for no lock and blocks no reader or
writer; it copies what no reader still needs and leaves the rest for the next one, as SQLite's own
automatic checkpoint does. Durability is unchanged (a commit is in the WAL either way, and opening the
database after a crash replays the WAL), and the last connection to close still checkpoints and removes
the WAL.

Why a backstop: SQLite starts the WAL over only when a write begins while the WAL is wholly copied. A
commit that lands while this thread copies leaves it partly copied, so under back-to-back writes the WAL
would never start over and would grow without limit (measured, 144 MB of back-to-back snapshot writes
with checkpoints every 0.05 s: 173 MiB). Past BACKSTOP_PAGES the committing connection checkpoints as
before, and the WAL peaked at 16.9-20.8 MiB over the same writes (tests/storage/test_wal_checkpointer.py).
The interval is at least MIN_INTERVAL_S: a thread that checkpoints without pause holds SQLite's
checkpoint lock nearly all the time, the commits' own checkpoints are turned away as busy, and the WAL
went past the backstop by up to 27 MiB in such runs.

The thread starts at the first write and holds the checkpointer only weakly: a store that is dropped
without `close` does not stay alive for it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from megalodoc.storage.errors import StorageError

logger = logging.getLogger(__name__)

# Seconds between background checkpoints while writes keep coming: an ingest commits a snapshot every
# 0.1-0.2 s on a CPU, so each checkpoint copies several snapshots, and the WAL stays a few MB.
CHECKPOINT_INTERVAL_S = 1.0
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 86_400.0
# WAL pages (4 KiB) past which a commit still checkpoints by itself (SQLite's default: 1,000): 16 MiB.
BACKSTOP_PAGES = 4096
# What a store's SQLite connections set.
BACKSTOP_AUTOCHECKPOINT = {"wal_autocheckpoint": BACKSTOP_PAGES}


class _Signals:
    """What the thread shares with its checkpointer: two events and a clock, nothing that holds the engine."""

    def __init__(self) -> None:
        self.wake = threading.Event()  # set by every write
        self.stop = threading.Event()  # set by close, or when the checkpointer is collected
        self.last = time.monotonic()  # of the last checkpoint's end (at first: the store's opening)

    def halt(self) -> None:
        self.stop.set()
        self.wake.set()


def check_interval(interval: float) -> float:
    if not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:  # also refuses NaN
        raise ValueError(f"the checkpoint interval must be {MIN_INTERVAL_S} to {MAX_INTERVAL_S:,.0f} seconds, "
                         f"got {interval}")
    return interval


class WalCheckpointer:
    """Checkpoints the SQLite file behind `engine` in the background after writes (see the module)."""

    def __init__(self, engine: Engine, where: str, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self._engine = engine
        self._where = where
        self._interval = check_interval(interval)
        self._signals = _Signals()
        self._lock = threading.Lock()  # guards starting and closing the thread
        self._busy = threading.Lock()  # held while a checkpoint runs, or while paused
        self._thread: threading.Thread | None = None
        self._closed = False
        self.checkpoints = 0  # completed checkpoints (each PASSIVE: it may have copied only part of the WAL)
        weakref.finalize(self, _Signals.halt, self._signals)

    def wrote(self) -> None:
        """Note a committed write: a checkpoint follows within `interval` seconds."""
        if self._thread is None:
            with self._lock:
                if self._closed:
                    return
                if self._thread is None:
                    # recorded before it starts: an interrupt (Ctrl-C) inside start() must not leave a
                    # running thread that the next write would double and close() would not wait for
                    self._thread = threading.Thread(
                        target=_run, args=(weakref.ref(self), self._signals, self._interval),
                        name="megalodoc-wal-checkpoint", daemon=True)
                    try:
                        self._thread.start()
                    except RuntimeError as exc:  # no thread to be had (a limit, interpreter shutdown): the
                        # write is committed all the same, and the backstop still bounds the WAL
                        self._thread = None
                        logger.warning("%s: no WAL checkpoint thread, tried again at the next write: %s",
                                       self._where, exc)
                        return
        self._signals.wake.set()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No checkpoint of this checkpointer runs inside (one in progress is waited for): for work that
        checkpoints the file itself, which SQLite refuses as busy while another checkpoint runs. Do not
        close the store inside: close waits for the thread, which may be waiting here."""
        with self._busy:
            yield

    def checkpoint(self) -> tuple[int, int, int] | None:
        """One PASSIVE checkpoint now, in the calling thread: (busy, frames in the WAL, frames checkpointed),
        or None when it failed (logged as a warning; the next one tries again) or the store is closed."""
        if self._closed:
            return None
        try:
            with (self._busy, contextlib.closing(self._engine.raw_connection()) as connection,
                  contextlib.closing(connection.cursor()) as cursor):
                busy, log, done = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.checkpoints += 1
        except (sqlite3.Error, DBAPIError, PoolTimeoutError, StorageError, OSError) as exc:
            logger.warning("%s: WAL checkpoint failed, retried after the next write: %s", self._where, exc)
            return None
        logger.debug("%s: WAL checkpoint, %d of %d frames copied", self._where, done, log)
        return int(busy), int(log), int(done)

    def close(self) -> None:
        """Stop the thread (waiting for a checkpoint in progress); it starts no checkpoint afterwards."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._signals.halt()
        # (a thread interrupted before it started is not alive, and would exit at once if it started now)
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join()


def _run(owner_ref: weakref.ref[WalCheckpointer], signals: _Signals, interval: float) -> None:
    # The stop is checked before every wait: halt() sets it before its wake-up, which the clear() below
    # can swallow when halt() comes between the interval's end and the clear.
    while not signals.stop.is_set():
        signals.wake.wait()
        # let the writes of one interval gather into one checkpoint
        if signals.stop.wait(max(0.0, signals.last + interval - time.monotonic())):
            return
        signals.wake.clear()  # a write from here on asks for the next checkpoint
        owner = owner_ref()
        if owner is None:
            return
        try:
            owner.checkpoint()
        except Exception:  # a bug: in the log with its traceback, and the thread keeps checkpointing
            logger.exception("%s: WAL checkpoint thread", owner._where)
        del owner
        signals.last = time.monotonic()
