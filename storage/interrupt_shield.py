"""Store work that a Ctrl-C must not cut in half.

Python raises KeyboardInterrupt at whatever statement the main thread runs when SIGINT arrives, also
inside SQLAlchemy and the pool: between a `threading.Lock`'s acquire and its release (SQLAlchemy's
session-id counter), or with a connection's transaction open. Interrupted there, the lock stays held or
the transaction stays open, and the next store call of the process waits forever or for SQLite's busy
timeout on every attempt (minutes). So store work in the main thread runs `shielded()`, and a process
owner's SIGINT handler asks `defer_interrupt()` first: while store work runs, the interrupt is recorded
instead of raised, and the work raises KeyboardInterrupt as soon as it ends (a busy store is not
retried once an interrupt waits). Other threads never receive signals and are not counted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0  # nesting of shielded store work in the main thread
_pending = False  # an interrupt arrived during it


@contextmanager
def shielded() -> Iterator[None]:
    """Run the enclosed store work to its end before an interrupt that arrives meanwhile is raised."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending:
            _pending = False
            raise KeyboardInterrupt


def defer_interrupt() -> bool:
    """For a SIGINT handler (it runs in the main thread): True, with the interrupt recorded, when store work
    is under way and will raise it when it ends; False when the handler should raise now."""
    global _pending
    if _depth == 0:
        return False
    _pending = True
    return True


def interrupt_waiting() -> bool:
    """Whether an interrupt waits for the store work under way (a busy store is then not retried)."""
    return _pending
