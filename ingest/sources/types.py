"""Record types shared by every reader: locators, text pieces, notices, options and the Source base."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .caps import IngestCaps
from .names import shortened, shown_name

LocatorKind = Literal["page", "lines", "offset"]
SourceKind = Literal["pdf", "text", "repo"]


@dataclass(frozen=True, slots=True)
class Locator:
    """Where a piece of source text comes from, in the source's own terms (a source reader attaches one to
    each piece it yields, before anything is tokenized).

    It has no token range: the ingest pipeline turns each Locator plus the token range its piece got into
    a `megalodoc.storage.Location`, the stored record citations are resolved from (storage does not import
    ingest, so the two stay separate types with the same source fields).

    kind "page":   ``page`` (1-based page number of a PDF).
    kind "lines":  ``path`` (repository path, "/"-separated, first component the repository's name),
                   ``line_start``..``line_end`` (1-based, inclusive) of that file.
    kind "offset": ``char_start``..``char_end`` (half-open character offsets into the document's text
                   stream) and, for convenience, the 1-based inclusive ``line_start``..``line_end``.
    """

    kind: LocatorKind
    page: int | None = None
    path: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "page":
            if self.page is None or self.page < 1:
                raise ValueError(f"page locator needs a page number >= 1, got {self.page!r}")
        elif self.kind == "lines":
            if not self.path:
                raise ValueError("lines locator needs a path")
            _check_lines(self.line_start, self.line_end)
        elif self.kind == "offset":
            if self.char_start is None or self.char_end is None or not 0 <= self.char_start <= self.char_end:
                raise ValueError(f"offset locator needs 0 <= char_start <= char_end, got "
                                 f"{self.char_start!r}..{self.char_end!r}")
            if self.line_start is not None or self.line_end is not None:
                _check_lines(self.line_start, self.line_end)
        else:
            raise ValueError(f"unknown locator kind {self.kind!r}; expected 'page', 'lines' or 'offset'")

    @classmethod
    def for_page(cls, page: int) -> Locator:
        """Page ``page`` (1-based) of a PDF."""
        return cls("page", page=page)

    @classmethod
    def for_lines(cls, path: str, line_start: int, line_end: int) -> Locator:
        """Lines ``line_start``..``line_end`` (1-based, inclusive) of repository file ``path``."""
        return cls("lines", path=path, line_start=line_start, line_end=line_end)

    @classmethod
    def for_offsets(cls, char_start: int, char_end: int, line_start: int | None = None,
                    line_end: int | None = None) -> Locator:
        """Characters ``char_start``..``char_end`` (half-open) of a text document's stream."""
        return cls("offset", char_start=char_start, char_end=char_end, line_start=line_start,
                   line_end=line_end)

    def to_dict(self) -> dict[str, Any]:
        """The non-empty fields, for storage rows or JSON."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Locator:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    def __str__(self) -> str:
        if self.kind == "page":
            return f"page {self.page}"
        if self.kind == "lines":
            return f"{self.path}:{_line_span(self.line_start, self.line_end)}"
        lines = f" (lines {_line_span(self.line_start, self.line_end)})" if self.line_start else ""
        return f"chars {self.char_start}-{self.char_end}{lines}"


def _check_lines(start: int | None, end: int | None) -> None:
    if start is None or end is None or not 1 <= start <= end:
        raise ValueError(f"line range needs 1 <= line_start <= line_end, got {start!r}..{end!r}")


def _line_span(start: int | None, end: int | None) -> str:
    return str(start) if start == end else f"{start}-{end}"


@dataclass(frozen=True, slots=True)
class TextPiece:
    """A run of a document's text stream and where it comes from.

    ``index`` is the piece's 0-based position among the document's pieces; piece boundaries are a pure
    function of the content and the options, so ``Source.pieces(start=index)`` resumes exactly there.
    """

    text: str
    locator: Locator
    index: int


@dataclass(frozen=True, slots=True)
class Notice:
    """Something skipped or worth a warning: ``subject`` (a file or repository path) and ``reason``.
    ``str()`` gives the one-line note, a long subject shortened."""

    subject: str
    reason: str

    def __str__(self) -> str:
        return f"{shortened(self.subject)}: {self.reason}"


def _default_pdf_workers() -> int:
    # Leave one core to the model; more than 4 workers rarely pays for a single PDF.
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class SourceOptions:
    """Reader settings. Those that change the text stream are part of ``Source.stream_version``."""

    max_file_bytes: int = 1 << 20
    """Repository files larger than this are skipped (1 MiB: generated or data files, not source)."""
    ignore_defaults: bool = True
    """Apply DEFAULT_IGNORE (.git, virtualenvs, caches, build outputs) to repositories."""
    extra_ignore: tuple[str, ...] = ()
    """More gitignore-style patterns applied at a repository's root."""
    honour_gitignore: bool = True
    """Read .gitignore files at every level of a repository."""
    repo_piece_lines: int = 64
    """Lines per piece of a repository file: the granularity of line locators."""
    text_piece_chars: int = 4096
    """Target characters per piece of a text document (pieces end at line breaks where possible)."""
    pdf_workers: int = field(default_factory=_default_pdf_workers)
    """Extraction processes for a PDF; 0 extracts in the calling process."""
    pdf_pages_per_task: int = 4
    """Pages a worker extracts per task (small, so early stops and errors are quick)."""
    pdf_tasks_ahead: int | None = None
    """Tasks submitted but not yet consumed (the bounded read-ahead); None means 2 per worker + 1."""
    pdf_in_process_below: int = 16
    """PDFs with fewer pages than this are extracted in-process: starting a worker costs about 0.5 s,
    what pypdf needs for 10-25 pages."""
    caps: IngestCaps = field(default_factory=IngestCaps)
    """Limits on runaway inputs (bytes, tokens, files, pages, archive expansion); see ``caps``. They
    decide whether an input is read, never how: they are not part of ``stream_version``."""

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "repo_piece_lines", "text_piece_chars", "pdf_pages_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"SourceOptions.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.pdf_workers < 0:
            raise ValueError(f"SourceOptions.pdf_workers must be >= 0, got {self.pdf_workers!r}")
        if self.pdf_tasks_ahead is not None and self.pdf_tasks_ahead < 1:
            raise ValueError(f"SourceOptions.pdf_tasks_ahead must be >= 1, got {self.pdf_tasks_ahead!r}")


class Source(ABC):
    """An opened document. Opening checks the input and computes ``content_hash``; ``pieces()``
    streams the text.

    Attributes: ``kind`` ("pdf", "text" or "repo"), ``path``, ``name`` (display name), ``content_hash``
    (hex sha256), ``unit_name`` / ``unit_count`` (pages, files or lines: for progress), ``warnings`` and
    ``skipped`` (lists of :class:`Notice`; PDF warnings can grow while pieces are read),
    ``encodings`` (file -> codec used to decode it), ``stream_version`` (reader version plus the
    options that shape the stream; store it beside the hash and refuse to resume under another).
    """

    kind: SourceKind

    def __init__(self, path: Path, name: str, content_hash: str, options: SourceOptions) -> None:
        self.path = path
        self.name = shown_name(name)
        self.content_hash = content_hash
        self.options = options
        self.warnings: list[Notice] = []
        self.skipped: list[Notice] = []
        self.encodings: dict[str, str] = {}
        self.unit_name = "unit"
        self.unit_count = 0

    @property
    @abstractmethod
    def stream_version(self) -> str:
        """Reader version and stream-shaping options, e.g. ``"repo/1 lines=64"``."""

    @abstractmethod
    def pieces(self, start: int = 0) -> Iterator[TextPiece]:
        """Yield the text pieces in document order, beginning at piece index ``start``.

        Each call starts afresh. Closing the iterator early releases its resources (PDF workers).
        Raises SourceError subclasses naming the file for faults found while reading.
        """

    def text(self) -> str:
        """The whole text stream as one string (for small documents and tests)."""
        return "".join(piece.text for piece in self.pieces())

    def close(self) -> None:
        """Release resources held between calls (temporary folders of archives)."""
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind} sha256={self.content_hash[:12]}>"
