"""Ctrl-C while a command starts up ends the process at once.

Until a command has loaded its model and opened its store nothing has been read or written, and an
interrupt delivered while torch is being imported can be lost (swallowed by code that runs inside the
import) or abort the process from C++ (a Python callback raising through pybind11). So during start-up
SIGINT writes one line and exits with status 130 right away (SQLite rolls back a store creation cut
short on its next open); afterwards the usual KeyboardInterrupt takes over, and the command stops
cooperatively at a safe point.

A KeyboardInterrupt raised while Python runs a finalizer (a ``__del__`` method or a weakref callback,
which the garbage collector may start between any two statements) is printed and dropped, and the
interrupt is lost. So while a command reads, SIGINT also tells it to stop (a cancel token that the
reading checks after every model call) before raising as usual; during store work the raise waits
until that work ends (``storage/interrupt_shield.py``: an interrupt inside SQLAlchemy could leave a lock
held and hang the process).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType


def _handles_interrupts() -> bool:
    """Whether this thread receives SIGINT and the process has not been told to ignore it (a command
    started in the background by a shell script inherits SIG_IGN: a Ctrl-C meant for the script must not
    reach it)."""
    return (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None))


@contextmanager
def _sigint_handler(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """`handler` answers SIGINT within the block, then the previous handler again; unchanged elsewhere."""
    if not _handles_interrupts():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_at_once_on_interrupt(message: str) -> AbstractContextManager[None]:
    """Within the block, SIGINT prints `message` to stderr and exits with status 130 immediately (only in
    the main thread, the one signals reach; elsewhere, or where SIGINT is ignored, the block runs unchanged)."""

    def leave(_signum: int, _frame: FrameType | None) -> None:
        os.write(2, f"\n{message}\n".encode())
        os._exit(130)

    return _sigint_handler(leave)


def stop_on_interrupt(stop: Callable[[], None]) -> AbstractContextManager[None]:
    """Within the block, SIGINT calls `stop` and then raises KeyboardInterrupt as Python's own handler
    does: an interrupt whose exception is dropped on its way (see above) still stops the work (only in
    the main thread; elsewhere, or where SIGINT is ignored, the block runs unchanged)."""

    # imported here, not at the top: this module is imported before start-up, when loading the store package
    # (SQLAlchemy) would delay the start-up handler
    from megalodoc.storage.interrupt_shield import defer_interrupt

    def interrupt(signum: int, frame: FrameType | None) -> None:
        stop()
        if defer_interrupt():  # store work under way: it raises KeyboardInterrupt when it ends
            return
        signal.default_int_handler(signum, frame)

    return _sigint_handler(interrupt)
