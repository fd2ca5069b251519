"""Text clean-up before tokenization.

PDF text (``clean_pdf_text``): ligatures spelled out, soft hyphens dropped, words hyphenated across a
line end joined, odd spaces and control characters removed, runs of spaces collapsed, trailing spaces
and excess blank lines removed, NFC. Prose files (``clean_prose``): NFC only. Code is never cleaned:
repository files reach the tokenizer byte-exact apart from newline normalisation.
"""

from __future__ import annotations

import re
import unicodedata

LIGATURES = {
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "st",  # long s + t
    "\ufb06": "st",
    "\u0132": "IJ",
    "\u0133": "ij",
}
"""Typographic ligatures that PDF fonts emit as one code point, and their spelling."""

_SPACES = "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_ZERO_WIDTH = "\u00ad\u200b\u200c\u200d\u2060\ufeff"  # soft hyphen, zero-width spaces and joiners, BOM
_CONTROLS = "".join(chr(c) for c in range(32) if chr(c) not in "\n\t") + "\x7f"

_CHAR_MAP = str.maketrans(
    {**LIGATURES, **dict.fromkeys(_SPACES, " "),
     **dict.fromkeys(_ZERO_WIDTH + _CONTROLS, None), "\t": " "}
)

# A word broken at a line end: a letter, a hyphen, the line break (with stray spaces), and the rest of the
# word starting with a lower-case letter. "exam-\nple" -> "example"; "Jean-\nPaul" and "1990-\n2000" stay.
_HYPHEN_BREAK = re.compile(r"(?<=[^\W\d_])-[ ]*\n[ ]*(?=([^\W\d_]))")
_RUNS_OF_SPACES = re.compile(r" {2,}")
_TRAILING_SPACES = re.compile(r" +\n")
_LEADING_SPACES = re.compile(r"\n +")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_newlines(text: str) -> str:
    """"\\r\\n" and lone "\\r" become "\\n"."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def dehyphenate(text: str) -> str:
    """Join words hyphenated across a line end when the continuation starts lower-case."""
    return _HYPHEN_BREAK.sub(_join_if_lower, text)


def _join_if_lower(match: re.Match[str]) -> str:
    return "" if match.group(1).islower() else match.group(0)


def clean_pdf_text(text: str) -> str:
    """Clean the text of one PDF page (see the module docstring). Idempotent."""
    text = normalize_newlines(text).translate(_CHAR_MAP)
    text = _RUNS_OF_SPACES.sub(" ", text)
    text = _TRAILING_SPACES.sub("\n", text)
    text = _LEADING_SPACES.sub("\n", text)
    text = dehyphenate(text)
    text = _BLANK_LINES.sub("\n\n", text)
    return unicodedata.normalize("NFC", text.strip())


def clean_prose(text: str) -> str:
    """Normalise a run of prose from a text, Markdown, reStructuredText or HTML file: NFC."""
    return unicodedata.normalize("NFC", text)
