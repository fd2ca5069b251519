"""Ctrl-C during store work (the command line's handler, `app/interrupts.stop_on_interrupt`) is raised
when that work ends, not inside it: raised inside SQLAlchemy it could leave a lock held or a transaction
open, and the next store call of the process hung (a Ctrl-C during `megalodoc ingest` once waited 5-6
minutes in SQLite's busy wait). A busy store is not retried while an interrupt waits."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from megalodoc.app.interrupts import stop_on_interrupt
from megalodoc.storage.unit import UnitOfWork


def unit(path: Path, timeout: float = 5.0) -> UnitOfWork:
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": timeout})
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS notes (body TEXT)"))
    return UnitOfWork(engine, str(path))


def test_an_interrupt_during_a_write_is_raised_once_the_write_is_committed(tmp_path: Path) -> None:
    work_unit = unit(tmp_path / "s.db")
    stopped, finished = [], []

    def work(session) -> None:
        session.execute(text("INSERT INTO notes VALUES ('before')"))
        signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the work
        session.execute(text("INSERT INTO notes VALUES ('after')"))
        finished.append(True)

    with stop_on_interrupt(lambda: stopped.append(True)), pytest.raises(KeyboardInterrupt):
        work_unit.write(work)
    assert stopped == [True] and finished == [True]  # told to stop at once; the work ran to its end
    with sqlite3.connect(tmp_path / "s.db") as connection:  # committed, and nothing is left locked
        assert [r[0] for r in connection.execute("SELECT body FROM notes")] == ["before", "after"]
    started = time.monotonic()
    work_unit.write(lambda session: session.execute(text("INSERT INTO notes VALUES ('next')")))
    assert time.monotonic() - started < 1.0
    # outside store work the interrupt is raised at once, as Python's own handler does
    with stop_on_interrupt(lambda: None), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_a_busy_store_is_not_retried_once_an_interrupt_waits(tmp_path: Path) -> None:
    work_unit = unit(tmp_path / "s.db", timeout=1.0)
    holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock for good
    main = threading.main_thread().ident
    threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()
    started = time.monotonic()
    try:
        with stop_on_interrupt(lambda: None), pytest.raises(KeyboardInterrupt):
            work_unit.write(lambda session: session.execute(text("INSERT INTO notes VALUES ('x')")))
    finally:
        holder.rollback()
        holder.close()
    # the attempt under way ends at SQLite's 1 s busy timeout; 8 attempts with backoff took about 15 s
    assert time.monotonic() - started < 4.0
