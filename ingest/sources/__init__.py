"""Source readers: turn a PDF, a text document or a repository into pieces of text with locations.

Public API
----------
``open_source(path, options: SourceOptions | None = None) -> Source``
    Detects the kind from the content (magic bytes) before the name: PDF; zip or tar archive (.tar,
    .tar.gz/.tgz, .tar.bz2, .tar.xz) or folder = repository; anything else a text document (plain,
    Markdown, reStructuredText, HTML). Checks the input and computes ``content_hash``; raises a
    ``SourceError`` subclass naming the path and the cause.

``Source`` (``PdfSource``, ``TextSource``, ``RepoSource``)
    ``kind`` ("pdf" | "text" | "repo"), ``path``, ``name`` (display name), ``content_hash`` (hex sha256:
    of the file's bytes; for a repository of its sorted (path, bytes)), ``stream_version`` (reader
    version and the options that shape the stream: store it and resume only under the same one),
    ``unit_name`` / ``unit_count`` ("page" / "file" / "byte" and how many, for progress),
    ``warnings`` and ``skipped`` (lists of ``Notice(subject, reason)``), ``encodings`` (file -> codec),
    ``pieces(start=0) -> Iterator[TextPiece]`` (document order, resumable at a piece index; closing it
    early stops PDF workers), ``text()``, ``close()``, context manager.

``TextPiece(text, locator, index)``
    Concatenating the ``text`` of all pieces gives the document's text stream. PDF: one piece per page
    (empty for pages without text), each non-empty page followed by "\\n\\n". Repository: each file
    introduced by ``# file: NAME/PATH`` (files after the first preceded by an empty line), cut every
    ``repo_piece_lines`` lines. Text: pieces of about ``text_piece_chars`` ending at line breaks.

``Locator(kind, page, path, line_start, line_end, char_start, char_end)`` (frozen)
    ``Locator.for_page(n)`` (1-based), ``Locator.for_lines(path, first, last)`` (1-based, inclusive),
    ``Locator.for_offsets(start, end, line_start, line_end)`` (half-open character offsets into the
    text stream); ``to_dict()`` / ``from_dict()``; ``str()`` reads "page 3", "json/decoder.py:1-64".

``SourceOptions`` (frozen): ``max_file_bytes`` (1 MiB), ``ignore_defaults``, ``extra_ignore``,
    ``honour_gitignore``, ``repo_piece_lines`` (64), ``text_piece_chars`` (4096), ``pdf_workers``
    (0 = in-process), ``pdf_pages_per_task`` (4), ``pdf_tasks_ahead`` (None = 2 per worker + 1),
    ``pdf_in_process_below`` (16 pages), ``caps`` (``IngestCaps``: bytes, tokens, files, pages and
    archive expansion of one input, see ``caps``; over one raises ``CapExceededError``).

Hostile inputs (``path_checks``): a path is judged from ``os.stat`` and ``os.path.realpath`` before any
open; /proc, /sys, /dev, pipes, sockets and devices are refused unread, a regular file written with a
trailing slash is "not a folder", and files are opened with ``open_regular`` (non-blocking, re-checked).
Undecodable name bytes are shown as ``\\xNN`` (``shown_name``).

Errors (all ``SourceError(path, reason)``, message "PATH: reason"): ``SourceNotFoundError``,
``EmptySourceError``, ``BinaryFileError``, ``UnsupportedSourceError``, ``CorruptPdfError``,
``EncryptedPdfError``, ``NoTextLayerError``, ``CorruptArchiveError``, ``ExtractionError``,
``SourceChangedError``.

Tokenization of a source lives in ``megalodoc.ingest.token_stream``; PDF text cleaning in
``megalodoc.ingest.normalize``.
"""

from .caps import CapExceededError, IngestCaps
from .detect import open_source
from .errors import (
    BinaryFileError,
    CorruptArchiveError,
    CorruptPdfError,
    EmptySourceError,
    EncryptedPdfError,
    ExtractionError,
    NoTextLayerError,
    SourceChangedError,
    SourceError,
    SourceNotFoundError,
    UnsupportedSourceError,
)
from .ignore import DEFAULT_IGNORE
from .names import shown_name
from .pdf import PdfSource
from .repo import HEADER as REPO_FILE_HEADER
from .repo import RepoSource
from .text import TextSource
from .types import Locator, LocatorKind, Notice, Source, SourceKind, SourceOptions, TextPiece

__all__ = [
    "DEFAULT_IGNORE",
    "REPO_FILE_HEADER",
    "BinaryFileError",
    "CapExceededError",
    "CorruptArchiveError",
    "CorruptPdfError",
    "EmptySourceError",
    "EncryptedPdfError",
    "ExtractionError",
    "IngestCaps",
    "Locator",
    "LocatorKind",
    "NoTextLayerError",
    "Notice",
    "PdfSource",
    "RepoSource",
    "Source",
    "SourceChangedError",
    "SourceError",
    "SourceKind",
    "SourceNotFoundError",
    "SourceOptions",
    "TextPiece",
    "TextSource",
    "UnsupportedSourceError",
    "open_source",
    "shown_name",
]
