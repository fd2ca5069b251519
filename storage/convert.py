"""Row -> record conversion and small value checks shared by the repository mixins."""

from __future__ import annotations

import json
from array import array
from datetime import datetime, timezone
from typing import Any

from megalodoc.storage.models import ChunkRow, Document, LocationRow, SessionRow, SnapshotRow, TurnRow
from megalodoc.storage.records import (
    ChunkRecord,
    DocumentRecord,
    LocationRecord,
    SessionRecord,
    SnapshotInfo,
    TurnRecord,
)

# Columns of a snapshot listing: everything but the blob, which lives in another table anyway.
SNAPSHOT_COLUMNS = (
    SnapshotRow.id,
    SnapshotRow.document_id,
    SnapshotRow.kind,
    SnapshotRow.position,
    SnapshotRow.blob_sha256,
    SnapshotRow.size_bytes,
    SnapshotRow.model_fingerprint,
    SnapshotRow.schema_version,
    SnapshotRow.metadata_json,
    SnapshotRow.created_at,
)
LOCATION_COLUMNS = (
    LocationRow.id,
    LocationRow.document_id,
    LocationRow.token_start,
    LocationRow.token_end,
    LocationRow.page,
    LocationRow.path,
    LocationRow.line_start,
    LocationRow.line_end,
    LocationRow.char_start,
    LocationRow.char_end,
)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def document_record(row: Document) -> DocumentRecord:
    return DocumentRecord(
        id=row.id,
        content_hash=row.content_hash,
        name=row.name,
        kind=row.kind,
        source_path=row.source_path,
        status=row.status,
        token_count=row.token_count,
        committed_position=row.committed_position,
        tokenizer_fingerprint=row.tokenizer_fingerprint,
        model_fingerprint=row.model_fingerprint,
        error=row.error,
        claimed_by=row.claimed_by,
        lease_expires_at=row.lease_expires_at,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


def snapshot_info(row: Any) -> SnapshotInfo:
    """From a row of `SNAPSHOT_COLUMNS` (or a SnapshotRow)."""
    return SnapshotInfo(
        id=row.id,
        document_id=row.document_id,
        kind=row.kind,
        position=row.position,
        blob_sha256=row.blob_sha256,
        size_bytes=row.size_bytes,
        model_fingerprint=row.model_fingerprint,
        schema_version=row.schema_version,
        metadata=json.loads(row.metadata_json),
        created_at=aware(row.created_at),
    )


def location_record(row: Any) -> LocationRecord:
    """From a row of `LOCATION_COLUMNS` (or a LocationRow)."""
    return LocationRecord(
        id=row.id,
        document_id=row.document_id,
        start=row.token_start,
        end=row.token_end,
        page=row.page,
        path=row.path,
        line_start=row.line_start,
        line_end=row.line_end,
        char_start=row.char_start,
        char_end=row.char_end,
    )


def chunk_record(row: ChunkRow) -> ChunkRecord:
    return ChunkRecord(
        id=row.id,
        document_id=row.document_id,
        start=row.token_start,
        end=row.token_end,
        text=row.text,
        has_token_ids=row.token_ids is not None,
    )


def session_record(row: SessionRow) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        document_id=row.document_id,
        position=row.position,
        snapshot_id=row.snapshot_id,
        title=row.title,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


def turn_record(row: TurnRow) -> TurnRecord:
    return TurnRecord(
        id=row.id,
        session_id=row.session_id,
        parent_turn_id=row.parent_turn_id,
        prompt=row.prompt,
        answer=row.answer,
        sampling=json.loads(row.sampling_json),
        snapshot_id=row.snapshot_id,
        created_at=aware(row.created_at),
    )


def pack_token_ids(ids: tuple[int, ...] | None) -> bytes | None:
    """Token ids as int32 little-endian bytes (ids are checked to fit when the ChunkText is built)."""
    if ids is None:
        return None
    packed = array("i", ids)
    if packed.itemsize != 4:
        raise RuntimeError("this platform's C int is not 32 bits")
    return _little_endian(packed).tobytes()


def unpack_token_ids(data: bytes) -> list[int]:
    packed = array("i")
    packed.frombytes(data)
    return _little_endian(packed).tolist()


def _little_endian(values: array) -> array:
    import sys

    if sys.byteorder == "big":
        values.byteswap()
    return values


def to_json(what: str, value: Any) -> str:
    """JSON text of a dict, or a ValueError naming `what` when it cannot be stored."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serializable: {exc}") from exc


def require_text(what: str, value: Any, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def require_int(what: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return value
