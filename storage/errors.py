"""Errors raised by the store. Every one subclasses `StorageError`, so callers can catch the family."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every storage error."""


class NotFoundError(StorageError, LookupError):
    """A document, snapshot, session or turn with the requested id does not exist."""


class SchemaError(StorageError):
    """The database schema does not match what this version of megalodoc writes."""


class SchemaBehindError(SchemaError):
    """The database is at an older schema revision; `megalodoc db upgrade` brings it forward."""


class SchemaNewerError(SchemaError):
    """The database was written by a newer megalodoc; this version refuses to touch it."""


class CorruptSnapshotError(StorageError):
    """A stored state blob no longer matches its sha256: the bytes were damaged after they were written."""


class StorageFullError(StorageError):
    """The disk (or the database's size limit) is full; the failed write was rolled back."""


class ConflictError(StorageError):
    """The write broke a uniqueness or reference rule of the stored data; nothing of it was kept."""


class DocumentExistsError(ConflictError):
    """A document with the same content hash and model fingerprint is already stored."""

    def __init__(self, message: str, existing_id: int) -> None:
        super().__init__(message)
        self.existing_id = existing_id


class DocumentInUseError(StorageError):
    """Deleting the document was refused: sessions point at it, or a worker is ingesting it."""


class SnapshotExistsError(ConflictError):
    """A different snapshot is already stored at that (document, position)."""


class SnapshotOrderError(StorageError, ValueError):
    """A document snapshot must lie after the document's committed position."""


class ClaimLostError(StorageError):
    """The worker no longer holds the document's claim (its lease expired and another worker took it)."""


class DocumentStatusError(StorageError):
    """The document's status forbids the operation (e.g. a snapshot for a document that is not ingesting)."""


class DatabaseUrlError(StorageError, ValueError):
    """The database URL cannot be parsed (no scheme, a port that is not a number, ...); nothing was opened."""
