"""Which errors are a user's to fix (shown as they are) and which are bugs (logged with a traceback)."""

from __future__ import annotations


class UiError(Exception):
    """A request the app refuses (empty question, file too large, nothing selected); the message says why."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message is shown to the person as is: the app's own refusals, the reader
    service's, ingest's, the source readers', storage's, checkpoint and state mismatches, and bad values."""
    from megalodoc.app.reader import ReaderError
    from megalodoc.ingest.pipeline import IngestError
    from megalodoc.ingest.sources import SourceError
    from megalodoc.model import CheckpointError, StateMismatchError
    from megalodoc.storage import StorageError

    return (UiError, ReaderError, IngestError, SourceError, StorageError, CheckpointError, StateMismatchError,
            ValueError)
