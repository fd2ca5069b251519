"""Record which files the process opens, with a Python audit hook ("open" events of open() and os.open).

Audit hooks cannot be removed, so one hook is installed for the whole session and records only while a
``recording()`` block is active.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_active: list[list[str]] = []
_installed = False


def _hook(event: str, args: tuple) -> None:
    if event == "open" and _active and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        for record in _active:
            record.append(path)


@contextmanager
def recording() -> Iterator[list[str]]:
    """The paths opened (as given to open) while the block runs."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    opened: list[str] = []
    _active.append(opened)
    try:
        yield opened
    finally:
        _active.remove(opened)


def touched(opened: list[str], target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` (or what it resolves to) is among ``opened``."""
    wanted = {os.fspath(target), os.path.realpath(target)}
    return any(path in wanted or os.path.realpath(path) in wanted for path in opened)
