"""Reading positions: a token position, a page ("p. 132"), a file line ("src/app.py:40"), a fraction of
what was read (0.25, "25%"), or None for the end of what was read. Every form resolves to a token
position in [0, committed position] of the document, or raises `PositionError` naming the document."""

from __future__ import annotations

import math
import re

from megalodoc.app.reader.errors import PositionError
from megalodoc.storage import DocumentRecord, Store

Position = int | float | str | None

_PAGE = re.compile(r"^\s*(?:p\.?|pp\.?|page)\s*(\d+)\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_FILE_LINE = re.compile(r"^\s*(.+?):(\d+)\s*$")
_NUMBER = re.compile(r"^\s*\d+\s*$")
_FRACTION = re.compile(r"^\s*(?:0?\.\d+|[01]\.0*)\s*$")


def resolve_position(store: Store, document: DocumentRecord, at: Position) -> int:
    """The token position `at` stands for in `document` (see the module docstring). A page or a file line
    resolves to its first token (a line, to the first token of the stored location holding it), so what
    is on that page or line lies after the reading point. A repository's file paths may omit the
    repository's name ("pkg/a.py:3" for "proj/pkg/a.py:3")."""
    end = document.committed_position
    name = f"{document.name} (id {document.id})"
    if at is None:
        return end
    if isinstance(at, bool):
        raise PositionError(f"{name}: position {at!r} is not a token position, page, file:line or fraction")
    if isinstance(at, int):
        return _check_range(name, at, end)
    if isinstance(at, float):
        return _fraction(name, at, end)
    if not isinstance(at, str):
        raise PositionError(f"{name}: position {at!r} is not a token position, page, file:line or fraction")
    text = at.strip()
    if _NUMBER.match(text):
        return _check_range(name, int(text), end)
    if _FRACTION.match(text):
        return _fraction(name, float(text), end)
    if match := _PERCENT.match(text):
        return _fraction(name, float(match.group(1)) / 100, end)
    if match := _PAGE.match(text):
        page = int(match.group(1))
        found = store.position_of_page(document.id, page) if page >= 1 else None
        if found is None:
            raise PositionError(f"{name}: no page {page} in what was read")
        return _check_range(name, found, end)
    if match := _FILE_LINE.match(text):
        path, line = match.group(1).strip(), int(match.group(2))
        found = None
        if line >= 1:  # repository paths are stored under the repository's name: accept them without it
            for candidate in (path, f"{document.name}/{path}"):
                found = store.position_of_line(document.id, candidate, line)
                if found is not None:
                    break
        if found is None:
            raise PositionError(f"{name}: no line {line} of file {path!r} in what was read")
        return _check_range(name, found, end)
    raise PositionError(
        f"{name}: cannot read position {at!r}; give a token position (5000), a page (\"p. 132\"), "
        "a file line (\"src/app.py:40\") or a fraction (0.25 or \"25%\")"
    )


def _check_range(name: str, position: int, end: int) -> int:
    if not 0 <= position <= end:
        raise PositionError(f"{name}: position {position} lies outside what was read (0 to {end} tokens)")
    return position


def _fraction(name: str, value: float, end: int) -> int:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise PositionError(f"{name}: fraction {value} must lie between 0 and 1")
    return round(value * end)
