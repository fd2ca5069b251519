"""A SQLite store's WAL checkpoints run on a background thread, not inside the commits that fill the WAL
(storage/wal_checkpointer.py): real SQLite files, real threads."""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from pathlib import Path

import pytest
from storage_testkit import MODEL, new_document, state_bytes

from megalodoc.storage import open_store
from megalodoc.storage.wal_checkpointer import BACKSTOP_PAGES

BLOB = 150_000  # random bytes: stored as they are, about 37 pages each
COUNT = 45  # about 1,700 pages (6.8 MB): past SQLite's default of 1,000 pages, short of the backstop


def fill(store, count: int = COUNT) -> dict[int, str]:
    """count snapshots of random state; their sha256 by position."""
    document = new_document(store)
    digests = {}
    for n in range(count):
        data = state_bytes(n, BLOB)
        store.add_snapshot(document.id, 64 * (n + 1), data, MODEL, 1)
        digests[64 * (n + 1)] = hashlib.sha256(data).hexdigest()
    return digests


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "megalodoc-wal-checkpoint"]


def test_commits_leave_checkpoints_to_the_background_thread(tmp_path: Path):
    db = tmp_path / "store.db"
    wal = tmp_path / "store.db-wal"
    store = open_store(str(db), checkpoint_interval=3600)  # the thread waits an hour before its first
    connection = store.engine.raw_connection()
    try:
        assert connection.cursor().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    finally:
        connection.close()
    before = size(db)
    fill(store)
    # no commit copied the WAL into the database file, though it passed SQLite's 1,000-page default
    assert BACKSTOP_PAGES * 4096 > size(wal) > COUNT * BLOB > 4 * 2**20
    assert size(db) - before < 2**20
    busy, frames, copied = store.checkpointer.checkpoint()
    assert (busy, copied) == (0, frames) and frames * 4096 >= COUNT * BLOB
    assert size(db) > COUNT * BLOB
    store.close()
    assert not wal.exists()  # the last connection to close checkpointed and removed the WAL


def test_the_thread_checkpoints_soon_after_writes_and_nothing_is_lost(tmp_path: Path):
    db = tmp_path / "store.db"
    with open_store(str(db), checkpoint_interval=0.05) as store:
        assert store.checkpointer.checkpoints == 0 and store.checkpointer._thread is None  # not before a write
        digests = fill(store)
        deadline = time.monotonic() + 30
        while size(db) <= COUNT * BLOB and time.monotonic() < deadline:
            time.sleep(0.02)
        assert size(db) > COUNT * BLOB, "the background thread did not checkpoint within 30 s"
        assert store.checkpointer.checkpoints >= 1
    with open_store(str(db)) as again:  # every blob reads back whole (each read checks its sha256)
        snapshots = again.list_snapshots(again.list_documents()[0].id)
        assert {s.position for s in snapshots} == set(digests)
        for snapshot in snapshots:
            assert hashlib.sha256(again.load_snapshot_bytes(snapshot.id)).hexdigest() == digests[snapshot.position]


def test_back_to_back_writes_keep_the_wal_bounded(tmp_path: Path):
    """Commits that land while the thread copies keep the WAL from starting over; the backstop bounds it."""
    wal = tmp_path / "store.db-wal"
    with open_store(str(tmp_path / "store.db"), checkpoint_interval=0.05) as store:  # the shortest allowed
        document = new_document(store)
        largest = 0
        for n in range(640):  # about 96 MB, six times the backstop
            store.add_snapshot(document.id, 64 * (n + 1), state_bytes(n, BLOB), MODEL, 1)
            largest = max(largest, size(wal))
        assert store.checkpointer.checkpoints > 0
    # measured over 960 such writes: 16.9-20.8 MiB with the 16 MiB backstop, 173 MiB without it
    assert largest < 2 * BACKSTOP_PAGES * 4096, f"WAL reached {largest / 2**20:.1f} MiB"


def test_vacuum_waits_for_a_checkpoint_in_progress_and_empties_the_wal(tmp_path: Path):
    """vacuum holds the checkpointer's pause, as its TRUNCATE checkpoint would be answered busy (leaving the
    WAL) while the thread checkpoints; here the test holds the pause as the thread would."""
    wal = tmp_path / "store.db-wal"
    with open_store(str(tmp_path / "store.db"), checkpoint_interval=3600) as store:
        fill(store, 10)
        done = threading.Event()
        worker = threading.Thread(target=lambda: (store.vacuum(), done.set()))
        with store.checkpointer.paused():  # as the thread holds it while it checkpoints
            worker.start()
            assert not done.wait(0.3)
        assert done.wait(60)
        worker.join()
        assert size(wal) == 0


def test_vacuum_says_when_a_reader_keeps_it_from_emptying_the_wal(tmp_path: Path, caplog):
    wal = tmp_path / "store.db-wal"
    quick = {"busy_timeout": 200}  # ms: the TRUNCATE checkpoint gives up on the reader soon
    with open_store(str(tmp_path / "store.db"), checkpoint_interval=3600, sqlite_pragmas=quick) as store:
        fill(store, 10)
        reader = store.engine.raw_connection()
        try:
            reader.cursor().execute("BEGIN")
            reader.cursor().execute("SELECT count(*) FROM documents").fetchone()  # holds its snapshot
            with caplog.at_level("WARNING", logger="megalodoc.storage.compaction"):
                assert store.vacuum()
        finally:
            reader.cursor().execute("ROLLBACK")
            reader.close()
        assert f"database {store.url}: vacuumed, but the WAL" in caplog.text
        assert size(wal) > 0
        assert store.vacuum() and size(wal) == 0  # with the reader gone


def test_paused_holds_off_a_checkpoint_until_it_ends(tmp_path: Path):
    with open_store(str(tmp_path / "store.db"), checkpoint_interval=3600) as store:
        fill(store, 2)
        done = threading.Event()
        worker = threading.Thread(target=lambda: (store.checkpointer.checkpoint(), done.set()))
        with store.checkpointer.paused():
            worker.start()
            assert not done.wait(0.3)
        assert done.wait(30)
        worker.join()


def test_close_stops_the_thread_and_a_dropped_store_does_not_keep_it(tmp_path: Path):
    store = open_store(str(tmp_path / "a.db"), checkpoint_interval=0.05)
    fill(store, 2)
    thread = store.checkpointer._thread
    assert thread.is_alive()
    store.close()
    assert not thread.is_alive()
    store.checkpointer.wrote()  # after close: no new thread
    assert store.checkpointer._thread is thread and thread not in checkpoint_threads()

    dropped = open_store(str(tmp_path / "b.db"), checkpoint_interval=3600)
    fill(dropped, 2)
    thread = dropped.checkpointer._thread
    del dropped
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_close_while_the_thread_ends_its_wait_does_not_hang(tmp_path: Path):
    """close() sets the stop and wakes the thread; a thread that had just finished waiting out its interval
    cleared that wake-up and waited for the next write forever, and close() waited for it."""
    for n in range(50):  # the code before hung at the first store, and in 81 of 100 when counted
        store = open_store(str(tmp_path / f"s{n}.db"), checkpoint_interval=0.05)
        store.add_snapshot(new_document(store).id, 64, state_bytes(n, 1000), MODEL, 1)
        # the thread's first wait ends 0.05 s after the checkpointer was made; close just after that,
        # with the interpreter busy (as after an ingest), so the thread waits for the interpreter lock
        until = store.checkpointer._signals.last + 0.05 + 0.0001 * n
        while time.monotonic() < until:
            pass
        closing = threading.Thread(target=store.close, daemon=True)
        closing.start()
        closing.join(timeout=5)
        assert not closing.is_alive(), f"close() hung (store {n} of 50)"


def test_a_failed_checkpoint_is_logged_and_the_next_write_tries_again(tmp_path: Path, caplog):
    db = tmp_path / "store.db"
    store = open_store(str(db), checkpoint_interval=0.05)
    fill(store, 2)
    with store.checkpointer.paused():  # no background checkpoint while the file is away
        store.engine.dispose()
        db.rename(tmp_path / "moved")  # the file is gone from under a new connection
        db.mkdir()
    with caplog.at_level("WARNING", logger="megalodoc.storage.wal_checkpointer"):
        assert store.checkpointer.checkpoint() is None
    assert f"database {store.url}: WAL checkpoint failed" in caplog.text
    db.rmdir()
    (tmp_path / "moved").rename(db)
    done = store.checkpointer.checkpoints
    store.add_snapshot(store.list_documents()[0].id, 64 * 100, state_bytes(99, BLOB), MODEL, 1)
    deadline = time.monotonic() + 30
    while store.checkpointer.checkpoints == done and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.checkpointer.checkpoints > done, "no checkpoint within 30 s of the next write"
    store.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_has_no_wal_and_no_checkpointer(url: str):
    before = set(checkpoint_threads())
    with open_store(url) as store:
        assert store.checkpointer is None
        fill(store, 2)
        assert set(checkpoint_threads()) <= before


@pytest.mark.parametrize("interval", [-1, 0, 0.01, float("inf"), float("nan"), 1e12])
def test_a_bad_interval_is_refused_before_the_file_is_touched(tmp_path: Path, interval: float):
    with pytest.raises(ValueError, match=f"checkpoint interval must be 0.05 to 86,400 seconds, got {interval}"):
        open_store(str(tmp_path / "store.db"), checkpoint_interval=interval)
    assert not list(tmp_path.iterdir())
