"""File names as people and databases see them.

Linux file names are bytes; Python keeps bytes that are not valid UTF-8 as surrogate escapes, which
cannot be printed, stored or tokenized. ``shown_name`` turns them into ``\\xNN`` so that a name can
always be shown (and a file with such a name skipped or read) without failing.
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
