"""Row -> record conversion and small value checks shared by the repository mixins."""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from sqlalchemy import String, type_coerce

from megalodoc.storage.models import ChunkRow, Document, LocationRow, SessionRow, SnapshotRow, TurnRow
from megalodoc.storage.records import (
    ChunkRecord,
    DocumentRecord,
    LocationRecord,
    SessionRecord,
    SnapshotInfo,
    TurnRecord,
)
from megalodoc.storage.status import DocumentStatus

_snapshots = SnapshotRow.__table__.c
# Columns of a snapshot listing, in SnapshotInfo's field order: everything but the blob (another table).
# Plain table columns (Core, not ORM entities) and the time as stored text: listing 10,000 snapshots is
# dominated by per-row conversion, so rows are turned into records by `snapshot_info` directly.
SNAPSHOT_COLUMNS = (
    _snapshots.id,
    _snapshots.document_id,
    _snapshots.kind,
    _snapshots.position,
    _snapshots.blob_sha256,
    _snapshots.size_bytes,
    _snapshots.model_fingerprint,
    _snapshots.schema_version,
    _snapshots.metadata_json,
    type_coerce(_snapshots.created_at, String).label("created_at"),
    _snapshots.tail_ids,
)
SNAPSHOT_FIELD_COLUMNS = tuple(column.name for column in SNAPSHOT_COLUMNS)
LOCATION_COLUMNS = tuple(
    LocationRow.__table__.c[name]
    for name in (
        "id",
        "document_id",
        "token_start",
        "token_end",
        "page",
        "path",
        "line_start",
        "line_end",
        "char_start",
        "char_end",
    )
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
        status=DocumentStatus(row.status),
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


def stored_time(value: datetime | str) -> datetime:
    """A stored time as aware UTC: SQLite's text ("2026-11-23 02:18:27.690976", UTC without an offset)
    or a driver's datetime."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value + "+00:00")  # much faster than parsing, then .replace()
        except ValueError:
            value = datetime.fromisoformat(value)
    return aware(value)


@lru_cache(maxsize=1024)
def _parsed_metadata(text: str) -> dict[str, Any]:
    return json.loads(text)


def snapshot_infos(rows: Iterable[Sequence[Any]]) -> list[SnapshotInfo]:
    """Records from rows of `SNAPSHOT_COLUMNS`. Written for speed (a listing may hold 10,000 rows):
    setting each frozen instance's __dict__ in one step is equivalent to calling __init__ and several
    times faster; the metadata text, equal across most of a document's snapshots, is parsed once; SQLite's
    time text is parsed inline (see `stored_time`)."""
    new, cls, parsed, set_dict, iso = (
        object.__new__,
        SnapshotInfo,
        _parsed_metadata,
        object.__setattr__,
        datetime.fromisoformat,
    )
    records = []
    for id_, document_id, kind, position, sha, size, model, schema, metadata, created, tail in rows:
        # SQLAlchemy keeps SQLite times as "YYYY-MM-DD HH:MM:SS.ffffff" (26 characters, UTC, no offset).
        naive_text = type(created) is str and len(created) <= 26
        record = new(cls)
        set_dict(
            record,
            "__dict__",
            {
                "id": id_,
                "document_id": document_id,
                "kind": kind,
                "position": position,
                "blob_sha256": sha,
                "size_bytes": size,
                "model_fingerprint": model,
                "schema_version": schema,
                "metadata": dict(parsed(metadata)),
                "created_at": iso(created + "+00:00") if naive_text else stored_time(created),
                "tail_ids": () if tail is None else tuple(unpack_token_ids(tail)),
            },
        )
        records.append(record)
    return records


def snapshot_info(row: Any) -> SnapshotInfo:
    """One record from a row of `SNAPSHOT_COLUMNS`, or from a SnapshotRow."""
    if isinstance(row, SnapshotRow):
        row = [getattr(row, name) for name in SNAPSHOT_FIELD_COLUMNS]
    return snapshot_infos([row])[0]


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
    if "\x00" in value:  # refused on every backend alike: a PostgreSQL text value cannot hold it
        raise ValueError(f"{what} contains a NUL character (U+0000) at character {value.index(chr(0)) + 1}")
    if not value.isascii():
        try:
            value.encode("utf-8")  # what the database stores; lone surrogates have no such form
        except UnicodeEncodeError as error:
            raise ValueError(f"{what} is not valid Unicode at character {error.start + 1} "
                             f"({value[error.start]!r}, perhaps a byte that is not UTF-8)") from None
    return value


def storable_text(value: str) -> str:
    """Free text the store keeps beside exact token ids (chunk text, a turn's prompt and answer, a
    failure's message): a NUL character, which a PostgreSQL text value cannot hold, is kept as U+FFFD on
    every backend, so a document or an answer holding one is stored alike everywhere."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def optional_text(what: str, value: Any) -> str | None:
    """None, or a string (empty allowed) checked as `require_text` checks it."""
    return None if value is None else require_text(what, value, allow_empty=True)


def require_int(what: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return value
