"""The one status vocabulary: what a stored document is, and what one ingest of a path came to.

`DocumentStatus` is stored in the `documents.status` column (the strings are the schema's; changing
one needs a migration). `IngestStatus` is what an ingest of one path ended as (`IngestOutcome.status`)
and what the upload page shows for a file while and after it is read; it reuses the document words
where they mean the same thing and adds the states no document is ever stored in.

Both are `str` enums: a member equals its string, prints as it (in f-strings and format specs too) and
serializes to it in JSON, so output and stored values are the plain words.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A str enum that prints and formats as its value (Python 3.10-3.12 agree on this only if said)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class DocumentStatus(_Word):
    """A stored document's status."""

    INGESTING = "ingesting"  # being read (or stopped by a crash mid-read: a later ingest resumes it)
    COMPLETE = "complete"  # read to the end
    FAILED = "failed"  # reading it raised an expected error; `DocumentRecord.error` says which
    CANCELLED = "cancelled"  # stopped by a cancel request; a later ingest resumes it


class IngestStatus(_Word):
    """What one ingest of a path came to, or (for the page) where a file of an upload job stands."""

    QUEUED = "queued"  # page only: waiting for the files before it in its job
    READING = "reading"  # page only: being read now
    COMPLETE = "complete"  # read to the end by this ingest
    ALREADY_COMPLETE = "already-complete"  # the document was complete before; nothing was read
    CANCELLED = "cancelled"  # stopped by a cancel request (resumable)
    FAILED = "failed"  # could not be read; the outcome's message names the file and the cause
    BUSY = "busy"  # another worker holds this document's claim (or took it over meanwhile): left to it

    @property
    def ok(self) -> bool:
        """The document is complete after this ingest."""
        return self in (IngestStatus.COMPLETE, IngestStatus.ALREADY_COMPLETE)

    @property
    def finished(self) -> bool:
        """Nothing more will happen to this file in its job."""
        return self not in (IngestStatus.QUEUED, IngestStatus.READING)
