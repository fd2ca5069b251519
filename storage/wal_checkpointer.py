"""SQLite WAL checkpoints on a background thread, off the threads that commit.

In WAL mode a commit appends its pages to the `-wal` file; a checkpoint copies them into the database
file and syncs both (synchronous=NORMAL). SQLite's default runs the checkpoint inside whichever commit
takes the WAL past 1,000 pages, so about every 28th snapshot of an ingest (about 140 KB each) paid for
copying and syncing some 4 MB: `bench/snapshots.py --writes-only` measured a mean write of 4.83-5.14 ms
with that default and 3.59-3.61 ms with this thread (README, "Snapshots: spacing, size and cost").

A file-backed store's connections therefore set wal_autocheckpoint = 0, and this thread checkpoints
instead: after a write, at most once per `interval` seconds while writes keep coming, on a pooled
connection of its own. A PASSIVE checkpoint waits for no lock and blocks no reader or writer; it copies
what no reader still needs and leaves the rest for the next one, as SQLite's own automatic checkpoint
does. Durability is unchanged (a commit is in the WAL either way, and opening the database after a crash
replays the WAL), and the last connection to close still checkpoints and removes the WAL.

The thread starts at the first write and holds the checkpointer only weakly: a store that is dropped
without `close` does not stay alive for it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

logger = logging.getLogger(__name__)

# Seconds between background checkpoints while writes keep coming: an ingest commits a snapshot every
# 0.1-0.2 s on a CPU, so each checkpoint copies several snapshots, and the WAL stays a few MB.
CHECKPOINT_INTERVAL_S = 1.0
# What a store's SQLite connections set so that no commit checkpoints by itself.
NO_AUTOCHECKPOINT = {"wal_autocheckpoint": 0}


class _Signals:
    """What the thread shares with its checkpointer: two events and a clock, nothing that holds the engine."""

    def __init__(self) -> None:
        self.wake = threading.Event()  # set by every write
        self.stop = threading.Event()  # set by close, or when the checkpointer is collected
        self.last = 0.0  # time.monotonic() of the last checkpoint's end

    def halt(self) -> None:
        self.stop.set()
        self.wake.set()


def check_interval(interval: float) -> float:
    if not interval >= 0:
        raise ValueError(f"the checkpoint interval must be >= 0 seconds, got {interval}")
    return interval


class WalCheckpointer:
    """Checkpoints the SQLite file behind `engine` in the background after writes (see the module)."""

    def __init__(self, engine: Engine, where: str, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self._engine = engine
        self._where = where
        self._interval = check_interval(interval)
        self._signals = _Signals()
        self._lock = threading.Lock()
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
                    self._thread = threading.Thread(
                        target=_run, args=(weakref.ref(self), self._signals, self._interval),
                        name="megalodoc-wal-checkpoint", daemon=True)
                    self._thread.start()
        self._signals.wake.set()

    def checkpoint(self) -> tuple[int, int, int] | None:
        """One PASSIVE checkpoint now, in the calling thread: (busy, frames in the WAL, frames checkpointed),
        or None when it failed (logged as a warning; the next one tries again)."""
        try:
            connection = self._engine.raw_connection()
            try:
                busy, log, done = connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                connection.close()
        except (sqlite3.Error, DBAPIError, PoolTimeoutError, OSError) as exc:
            logger.warning("%s: WAL checkpoint failed, retried after the next write: %s", self._where, exc)
            return None
        self.checkpoints += 1
        logger.debug("%s: WAL checkpoint, %d of %d frames copied", self._where, done, log)
        return int(busy), int(log), int(done)

    def close(self) -> None:
        """Stop the thread (waiting for a checkpoint in progress); it starts no checkpoint afterwards."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._signals.halt()
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def _run(owner_ref: weakref.ref[WalCheckpointer], signals: _Signals, interval: float) -> None:
    while True:
        signals.wake.wait()
        if signals.stop.is_set():
            return
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
