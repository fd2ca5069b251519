"""Faults: a writer killed mid-stream, a full disk, a busy database, readers racing a writer."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_testkit import MODEL, new_document, raw_execute, state_bytes

from megalodoc.storage import ChunkText, Location, StorageFullError, Store, open_store

KILL_WRITER = Path(__file__).resolve().parent / "kill_writer.py"
STEP = 64  # the writer's snapshot spacing (kill_writer.STEP)
KILLED_STATE_BYTES = 1024 * 1024  # big enough that most of the writer's time is spent inside a commit


def assert_consistent_after_crash(db_url: str, document_id: int, reported: list[int]) -> int:
    """Every reported snapshot present and intact, none half-written, text and locations exactly up to
    the committed position, which equals the last snapshot. Returns the committed position."""
    if db_url.startswith("sqlite:///"):
        assert raw_execute(db_url, "PRAGMA integrity_check") == [("ok",)]
    with open_store(db_url) as store:
        assert store.check_integrity() == []
        snapshots = store.list_snapshots(document_id)
        positions = [s.position for s in snapshots]
        assert positions == [STEP * i for i in range(1, len(positions) + 1)]
        assert set(reported) <= set(positions)
        committed = store.get_document(document_id).committed_position
        assert committed == (positions[-1] if positions else 0)
        for info in snapshots:
            index = info.position // STEP
            assert info.metadata == {"index": index}
            assert store.load_snapshot_bytes(info.id) == state_bytes(index, KILLED_STATE_BYTES)
        if committed:
            chunks = store.get_chunks(document_id, 0, committed + 10 * STEP)
            assert [c.start for c in chunks] == [p - STEP for p in positions]
            assert store.locate(document_id, committed - 1).page == committed // STEP
        assert store.locate(document_id, committed) is None
        return committed


def test_writer_killed_mid_stream_leaves_every_committed_snapshot_and_nothing_half_written(db_url: str) -> None:
    with open_store(db_url) as store:
        document_id = new_document(store).id
    chooser = random.Random(1234)
    reported: list[int] = []
    committed = 0
    for _round in range(5):
        writer = subprocess.Popen(
            [
                sys.executable,
                str(KILL_WRITER),
                db_url,
                str(document_id),
                str(committed // STEP + 1),
                str(KILLED_STATE_BYTES),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            seen_at = []
            for _ in range(chooser.randint(3, 5)):
                line = writer.stdout.readline()
                assert line, f"writer died early: {writer.stderr.read()}"
                seen_at.append(time.perf_counter())
                reported.append(int(line))
            # Kill at a random point of the next write: anywhere from its start to its commit.
            period = (seen_at[-1] - seen_at[0]) / (len(seen_at) - 1)
            time.sleep(chooser.uniform(0.0, 1.2 * period))
            writer.send_signal(signal.SIGKILL)
        finally:
            writer.kill()
            rest, _ = writer.communicate(timeout=30)
        assert writer.returncode == -signal.SIGKILL
        reported += [int(line) for line in rest.split()]
        committed = assert_consistent_after_crash(db_url, document_id, reported)
        assert committed >= max(reported)
    # The store carries on from where the killed writer stopped.
    with open_store(db_url) as store:
        store.add_snapshot(document_id, committed + STEP, state_bytes(0), MODEL, 1)
        assert store.get_document(document_id).committed_position == committed + STEP


def page_count(path: Path) -> tuple[int, int]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA page_count").fetchone()[0], connection.execute("PRAGMA page_size").fetchone()[
            0
        ]
    finally:
        connection.close()


def fill_until_full(store: Store, document_id: int, first_position: int) -> int:
    """Write 256 KiB snapshots until the store reports a full disk; returns the last committed position."""
    position = first_position
    with pytest.raises(StorageFullError, match="full") as caught:
        for _ in range(200):
            store.add_snapshot(
                document_id,
                position,
                state_bytes(position, 256 * 1024),
                MODEL,
                1,
                chunks=[ChunkText(position - STEP, position, "text " * 200)],
                locations=[Location.page_range(position - STEP, position, position // STEP)],
            )
            position += STEP
    assert "earlier data is intact" in str(caught.value)
    return position - STEP


def assert_intact_after_full(store: Store, document_id: int, last: int) -> None:
    snapshots = store.list_snapshots(document_id)
    assert [s.position for s in snapshots] == list(range(STEP, last + 1, STEP))
    assert store.get_document(document_id).committed_position == last
    for info in snapshots:
        assert store.load_snapshot_bytes(info.id) == state_bytes(info.position, 256 * 1024)
    assert store.check_integrity() == []


def test_size_limited_database_fails_the_write_cleanly(tmp_path: Path) -> None:
    """`max_page_count` makes SQLite itself answer SQLITE_FULL, exactly as a full disk does."""
    path = tmp_path / "limited.db"
    with open_store(str(path)) as store:
        document_id = new_document(store).id
        store.add_snapshot(document_id, STEP, state_bytes(STEP, 256 * 1024), MODEL, 1)
    pages, page_size = page_count(path)
    with open_store(str(path), sqlite_pragmas={"max_page_count": pages + (1024 * 1024) // page_size}) as store:
        last = fill_until_full(store, document_id, 2 * STEP)
        assert last >= 2 * STEP
        assert_intact_after_full(store, document_id, last)
        assert store.set_status(document_id, "failed", error="disk full").status == "failed"
    with open_store(str(path)) as store:  # with room again, ingest resumes where it stopped
        store.set_status(document_id, "ingesting")
        store.add_snapshot(document_id, last + STEP, state_bytes(1), MODEL, 1)
        assert store.check_integrity() == []


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root (the max_page_count test covers SQLITE_FULL)")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_fails_the_write_cleanly_and_keeps_earlier_data(tiny_tmpfs: Path) -> None:
    path = tiny_tmpfs / "full.db"
    with open_store(str(path)) as store:
        document_id = new_document(store).id
        last = fill_until_full(store, document_id, STEP)
        assert last >= STEP
        assert_intact_after_full(store, document_id, last)
    with open_store(str(path)) as store:
        assert_intact_after_full(store, document_id, last)


def test_four_readers_and_one_writer_run_without_errors(store: Store) -> None:
    document_id = new_document(store).id
    errors: list[BaseException] = []
    done = threading.Event()
    reads = [0] * 4

    def writer() -> None:
        try:
            for index in range(1, 31):
                store.add_snapshot(
                    document_id,
                    index * STEP,
                    state_bytes(index, 512 * 1024),
                    MODEL,
                    1,
                    chunks=[ChunkText((index - 1) * STEP, index * STEP, f"chunk number {index} of the stream")],
                )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    def reader(slot: int) -> None:
        chooser = random.Random(slot)
        seen = 0
        try:
            while not done.is_set() or reads[slot] < 5:
                committed = store.get_document(document_id).committed_position
                assert committed >= seen, "committed position went backwards"
                seen = committed
                snapshots = store.list_snapshots(document_id)
                assert len(snapshots) >= committed // STEP
                if snapshots:
                    info = store.latest_snapshot_at(document_id, chooser.randrange(STEP, 31 * STEP))
                    index = info.position // STEP
                    assert store.load_snapshot_bytes(info.id) == state_bytes(index, 512 * 1024)
                store.search("chunk stream", document_id=document_id, limit=3)
                reads[slot] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert all(count >= 5 for count in reads)
    assert store.get_document(document_id).committed_position == 30 * STEP


def hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> threading.Thread:
    """Another process-like writer that holds SQLite's write lock for `seconds`."""

    def hold() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE documents SET name = name")
        locked.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def test_readers_do_not_wait_for_a_writer_and_writers_retry_until_the_lock_is_free(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    # A short busy timeout, so the store's own retry loop (not only SQLite's wait) has to carry the write.
    with open_store(str(path), sqlite_pragmas={"busy_timeout": 50}) as store:
        document_id = new_document(store).id
        store.add_snapshot(document_id, STEP, state_bytes(1), MODEL, 1)
        locked = threading.Event()
        holder = hold_write_lock(path, 1.0, locked)
        assert locked.wait(10)
        started = time.perf_counter()
        assert len(store.list_snapshots(document_id)) == 1
        assert store.load_snapshot_bytes(store.list_snapshots(document_id)[0].id) == state_bytes(1)
        assert time.perf_counter() - started < 0.5, "a reader waited for the writer"
        store.add_snapshot(document_id, 2 * STEP, state_bytes(2), MODEL, 1)
        assert time.perf_counter() - started >= 0.9, "the write cannot have gone through while locked"
        holder.join()
        assert store.get_document(document_id).committed_position == 2 * STEP
