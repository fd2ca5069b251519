"""Expected failures of the reader service. Every one subclasses `ReaderError` and names the document
(or session) and the cause, so the UI and the CLI can show the message as is; bugs are not caught."""

from __future__ import annotations


class ReaderError(Exception):
    """Base class of the reader service's expected errors."""


class DocumentNotFoundError(ReaderError, LookupError):
    """No such document (never stored, or deleted meanwhile)."""


class AmbiguousDocumentError(ReaderError, LookupError):
    """A document name that several stored documents share; the message lists their ids."""


class DocumentNotReadyError(ReaderError):
    """The document has no tokens read yet (its ingest has not committed anything)."""


class DocumentInUseError(ReaderError):
    """Deleting the document was refused (sessions use it, or an ingest holds it); the message says which."""


class PositionError(ReaderError, ValueError):
    """A reading position that cannot be parsed or lies outside what was read of the document."""


class QuestionError(ReaderError, ValueError):
    """A question that cannot be asked: empty, or holding a character no store can keep."""


class EmptyQuestionError(QuestionError):
    """A question without any text."""


class SessionNotFoundError(ReaderError, LookupError):
    """No such session or turn (never stored, or deleted meanwhile)."""


class StoredStateError(ReaderError):
    """A stored state that the loaded model cannot use (another model, schema or chunk size)."""


class ForeignModelError(StoredStateError):
    """A document or stored state that was made by another model than the loaded one."""
