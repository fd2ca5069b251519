"""Source readers: turn a PDF, a text document (plain, Markdown, reStructuredText, HTML) or a repository
(a folder, .zip or tar archive) into pieces of text with locations.

Start with `open_source(path, options)` (`detect.py`): it decides the kind from the content, checks
the input and returns a `Source` (`types.py`) whose `pieces()` stream `TextPiece`s in document order,
resumable at a piece index; their texts concatenated are the document's text stream. One module per
reader: `pdf.py` (one piece per page, extracted by worker processes in `pdf_workers.py`), `text.py`
(HTML through `html_text.py`), `repo.py` (files in folder order, each under a `# file:` header).
Every refusal is a `SourceError` naming the file and the cause (`errors.py`). Tokenization of a source
is `megalodoc.ingest.token_stream`.
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
