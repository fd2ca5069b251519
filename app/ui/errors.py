"""Which errors are a user's to fix (shown as they are) and which are bugs (logged with a traceback)."""

from __future__ import annotations

import importlib


class UiError(Exception):
    """A request the app refuses (empty question, file too large, nothing selected); the message says why."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message is shown to the person as is: the app's own refusals, the reader
    service's, ingest's, the source readers', storage's, checkpoint and state mismatches, and bad values."""
    from megalodoc.ingest.pipeline import IngestError
    from megalodoc.ingest.sources import SourceError
    from megalodoc.model import CheckpointError, StateMismatchError
    from megalodoc.storage import StorageError

    found: list[type[BaseException]] = [UiError, IngestError, SourceError, StorageError, CheckpointError,
                                        StateMismatchError, ValueError]
    try:  # the reader service's error family, once it exists
        found.append(importlib.import_module("megalodoc.app.reader.errors").ReaderError)
    except (ImportError, AttributeError):
        pass
    return tuple(found)
