"""Errors raised by the source readers. Every message starts with the file it is about."""

from __future__ import annotations

import os

from .names import shown_name


class SourceError(Exception):
    """A document cannot be read. ``path`` names the file, ``reason`` says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = shown_name(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Errors cross process boundaries (PDF workers): rebuild from (path, reason), not from args.
        return (type(self), (self.path, self.reason))


class SourceNotFoundError(SourceError):
    """The path does not exist."""


class EmptySourceError(SourceError):
    """The file (or every file of a repository) holds no text."""


class BinaryFileError(SourceError):
    """A binary file was given as a text document."""


class UnsupportedSourceError(SourceError):
    """A format the readers do not handle (for example a gzip file that is not a tar archive)."""


class CorruptPdfError(SourceError):
    """pypdf cannot parse the file, or it is truncated."""


class EncryptedPdfError(SourceError):
    """The PDF is encrypted and does not open with an empty password."""


class NoTextLayerError(SourceError):
    """The PDF has no extractable text at all: it needs OCR."""


class ExtractionError(SourceError):
    """Extraction failed part-way (a worker raised or died)."""


class SourceChangedError(SourceError):
    """The file changed on disk after it was opened, so its content hash no longer holds."""


class CorruptArchiveError(SourceError):
    """A .zip or tar archive that cannot be read."""
