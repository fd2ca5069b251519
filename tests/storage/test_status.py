"""The status vocabulary prints, formats and serializes as its plain words (CLI and JSON output)."""

from __future__ import annotations

import json

from megalodoc.storage import DOCUMENT_STATUSES, DocumentStatus, IngestStatus


def test_members_print_format_and_serialize_as_their_words() -> None:
    status = IngestStatus.ALREADY_COMPLETE
    assert (str(status), f"{status}", f"{status:18}|", json.dumps({"s": status})) == (
        "already-complete", "already-complete", "already-complete  |", '{"s": "already-complete"}')
    assert DocumentStatus("failed") is DocumentStatus.FAILED and DocumentStatus.FAILED == "failed"
    assert DOCUMENT_STATUSES == ("ingesting", "complete", "failed", "cancelled")  # the schema's CHECK list


def test_ingest_words_agree_with_document_words_where_they_overlap() -> None:
    shared = {s.value for s in DocumentStatus} & {s.value for s in IngestStatus}
    assert shared == {"complete", "failed", "cancelled"}
    assert [s for s in IngestStatus if s.ok] == [IngestStatus.COMPLETE, IngestStatus.ALREADY_COMPLETE]
    assert [s for s in IngestStatus if not s.finished] == [IngestStatus.QUEUED, IngestStatus.READING]
