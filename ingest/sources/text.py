"""Plain text, Markdown, reStructuredText and HTML documents.

The text stream is the decoded file with newlines normalised to "\\n" (HTML: its readable text), cut
into pieces of about ``SourceOptions.text_piece_chars`` at line breaks. Prose formats are NFC-normalised
piece by piece; other text files (code given as a single document) are kept as they are. Locators are
character offsets into the stream, with the line numbers they span.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from ..normalize import clean_prose
from .decoding import FileScan, has_visible_text, iter_decoded, sniff_binary
from .errors import BinaryFileError, EmptySourceError
from .html_text import html_to_text
from .splitting import split_blocks
from .types import Locator, Notice, Source, SourceOptions, TextPiece

TextFormat = Literal["plain", "markdown", "rst", "html"]

READER_VERSION = 2
"""Bump when the text stream of an unchanged file would change (2: HTML navigation chrome dropped)."""

FORMAT_BY_SUFFIX: dict[str, TextFormat] = {
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown",
    ".rst": "rst", ".rest": "rst",
    ".html": "html", ".htm": "html", ".xhtml": "html",
}
PROSE_SUFFIXES = frozenset({"", ".txt", ".text", *FORMAT_BY_SUFFIX})
"""Files NFC-normalised as prose; anything else (code, data) keeps its exact characters."""


class TextSource(Source):
    """A single text document. Open it with :func:`open_source`."""

    kind = "text"

    def __init__(self, path: Path, scan: FileScan, text_format: TextFormat, options: SourceOptions) -> None:
        super().__init__(path, path.name, scan.sha256, options)
        self.format: TextFormat = text_format
        self.encoding = scan.encoding
        self.size = scan.size
        self.prose = path.suffix.lower() in PROSE_SUFFIXES
        self.encodings[str(path)] = scan.encoding
        self.unit_name = "byte"
        self.unit_count = scan.size
        if scan.encoding in ("cp1252", "latin-1"):
            self.warnings.append(Notice(str(path), f"not valid UTF-8; decoded as {scan.encoding}"))

    @property
    def stream_version(self) -> str:
        return f"text/{READER_VERSION} {self.format} chars={self.options.text_piece_chars}"

    def _blocks(self) -> Iterable[str]:
        blocks = iter_decoded(self.path, self.encoding)
        return html_to_text(blocks) if self.format == "html" else blocks

    def pieces(self, start: int = 0) -> Iterator[TextPiece]:
        char_pos = 0
        line = 1
        produced = False
        for index, raw in enumerate(split_blocks(self._blocks(), self.options.text_piece_chars)):
            text = clean_prose(raw) if self.prose else raw
            newlines = text.count("\n")
            last_line = line + newlines - (1 if text.endswith("\n") else 0)
            if index >= start:
                yield TextPiece(text, Locator.for_offsets(char_pos, char_pos + len(text), line, last_line), index)
            produced = produced or has_visible_text(text)
            char_pos += len(text)
            line += newlines
        if not produced and start == 0:
            raise EmptySourceError(self.path, f"no readable text in this {self.format} file")


def check_text_file(path: Path, scan: FileScan) -> None:
    """Raise if ``path`` cannot be a text document: empty, blank or binary."""
    if scan.size == 0:
        raise EmptySourceError(path, "empty file (0 bytes)")
    reason = scan.problem or sniff_binary(scan.head)
    if reason is not None:
        raise BinaryFileError(path, f"{reason}; not a text document (supported: PDF, text, Markdown, "
                                    "reStructuredText, HTML, a folder, .zip or .tar.gz)")
    if not scan.has_text:
        raise EmptySourceError(path, f"only whitespace ({scan.size} bytes), no text")
