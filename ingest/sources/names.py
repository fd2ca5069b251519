"""File names as people and databases see them.

Linux file names are bytes; Python keeps bytes that are not valid UTF-8 as surrogate escapes, which
cannot be printed, stored or tokenized. ``shown_name`` turns them into ``\\xNN`` so that a name can
always be shown (and a file with such a name skipped or read) without failing.
``shortened`` keeps a long name (an archive may hold names of thousands of characters) to one line of a note.
"""

from __future__ import annotations

import os


def shown_name(name: str | os.PathLike[str]) -> str:
    """``name`` printable and encodable: bytes that were not UTF-8 (surrogate escapes) become ``\\xNN``."""
    text = os.fspath(name)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


NOTE_NAME_CHARS = 160
"""Names longer than this are shortened in notes (an archive member's name may run to thousands)."""


def shortened(name: str, limit: int = NOTE_NAME_CHARS) -> str:
    """``name`` cut to about ``limit`` characters for a one-line note: its start and its end (where the
    suffix is) around "...". Shorter names are returned unchanged."""
    if len(name) <= limit:
        return name
    tail = limit // 3
    return f"{name[: limit - tail - 3]}...{name[-tail:]}"
