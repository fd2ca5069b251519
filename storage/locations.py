"""Locations (token range -> page / file:lines / characters, and back) and stored chunk text and ids."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Select, bindparam, func, insert, select
from sqlalchemy.orm import Session

from megalodoc.storage.convert import (
    LOCATION_COLUMNS,
    chunk_record,
    location_record,
    pack_token_ids,
    require_int,
    require_text,
    storable_text,
    unpack_token_ids,
)
from megalodoc.storage.documents import load_document
from megalodoc.storage.errors import StorageError
from megalodoc.storage.models import ChunkRow, LocationRow
from megalodoc.storage.records import ChunkRecord, ChunkText, Location, LocationRecord, describe_locations
from megalodoc.storage.row_ids import can_exist, guard_ids
from megalodoc.storage.unit import UnitOfWork


def chunk_rows(document_id: int, chunks: Sequence[ChunkText], up_to: int | None = None) -> list[dict[str, Any]]:
    """Insert parameters for `chunks`, checked: ChunkText values, distinct starts, ends <= `up_to`."""
    rows: list[dict[str, Any]] = []
    starts: set[int] = set()
    for chunk in chunks:
        if not isinstance(chunk, ChunkText):
            raise TypeError(f"chunks must be ChunkText values, got {type(chunk).__name__}")
        if up_to is not None and chunk.end > up_to:
            raise ValueError(f"chunk [{chunk.start}, {chunk.end}) ends after the snapshot position {up_to}")
        if chunk.start in starts:
            raise ValueError(f"two chunks start at token {chunk.start}")
        starts.add(chunk.start)
        rows.append(
            {
                "document_id": document_id,
                "token_start": chunk.start,
                "token_end": chunk.end,
                "text": storable_text(chunk.text),
                "token_ids": pack_token_ids(chunk.token_ids),
            }
        )
    return rows


def location_rows(document_id: int, locations: Sequence[Location], up_to: int | None = None) -> list[dict[str, Any]]:
    """Insert parameters for `locations`, checked: Location values, ends <= `up_to`."""
    rows: list[dict[str, Any]] = []
    for location in locations:
        if not isinstance(location, Location):
            raise TypeError(f"locations must be Location values, got {type(location).__name__}")
        if up_to is not None and location.end > up_to:
            raise ValueError(f"location [{location.start}, {location.end}) ends after the snapshot position {up_to}")
        rows.append(
            {
                "document_id": document_id,
                "token_start": location.start,
                "token_end": location.end,
                "page": location.page,
                "path": location.path,
                "line_start": location.line_start,
                "line_end": location.line_end,
                "char_start": location.char_start,
                "char_end": location.char_end,
            }
        )
    return rows


_locations = LocationRow.__table__.c
# Built once: search asks for the locations of every hit, and building statements costs more than running them.
_LOCATION_BEFORE = (
    select(*LOCATION_COLUMNS)
    .where(_locations.document_id == bindparam("document_id"), _locations.token_start < bindparam("start"))
    .order_by(_locations.token_start.desc())
    .limit(1)
)
_LOCATIONS_INSIDE = (
    select(*LOCATION_COLUMNS)
    .where(
        _locations.document_id == bindparam("document_id"),
        _locations.token_start >= bindparam("start"),
        _locations.token_start < bindparam("end"),
    )
    .order_by(_locations.token_start, _locations.id)
)


def overlapping_locations(session: Session, document_id: int, start: int, end: int) -> list[LocationRecord]:
    """Locations of the document that overlap tokens [start, end), by start. Two index seeks: the
    location running into `start` from before it, and those starting inside the range."""
    if not can_exist(session, document_id):
        return []
    connection = session.connection()
    params = {"document_id": document_id, "start": start, "end": end}
    before = connection.execute(_LOCATION_BEFORE, params).first()
    found = [location_record(row) for row in connection.execute(_LOCATIONS_INSIDE, params)]
    if before is not None and before.token_end > start:
        found.insert(0, location_record(before))
    return found


def overlapping_chunks(session: Session, document_id: int, start: int, end: int) -> list[ChunkRow]:
    """Chunk rows of the document that overlap tokens [start, end), by start."""
    if not can_exist(session, document_id):
        return []
    before = session.scalars(
        select(ChunkRow)
        .where(ChunkRow.document_id == document_id, ChunkRow.token_start < start)
        .order_by(ChunkRow.token_start.desc())
        .limit(1)
    ).first()
    inside = list(
        session.scalars(
            select(ChunkRow)
            .where(ChunkRow.document_id == document_id, ChunkRow.token_start >= start, ChunkRow.token_start < end)
            .order_by(ChunkRow.token_start)
        )
    )
    if before is not None and before.token_end > start:
        inside.insert(0, before)
    return inside


def _check_range(start: int, end: int) -> None:
    require_int("start", start)
    require_int("end", end)
    if end <= start:
        raise ValueError(f"need start < end, got start={start} end={end}")


def _first_token(query: Select, document_id: int) -> Callable[[Session], int | None]:
    """Work reading `query`, the first token of a place in document `document_id`, or None (also for an
    id no document can have, without reaching the database)."""
    return guard_ids(lambda s: s.scalar(query), None, document_id)


class LocationsMixin:
    _uow: UnitOfWork

    def add_locations(self, document_id: int, locations: Sequence[Location]) -> int:
        """Store locations outside a snapshot (e.g. all of them once tokenization is done). Returns count."""
        rows = location_rows(document_id, locations)

        def work(session: Session) -> int:
            load_document(session, document_id)
            if rows:
                session.execute(insert(LocationRow), rows)
            return len(rows)

        return self._uow.write(work)

    def add_chunks(self, document_id: int, chunks: Sequence[ChunkText]) -> int:
        """Store chunk text (and token ids) outside a snapshot. Returns count."""
        rows = chunk_rows(document_id, chunks)

        def work(session: Session) -> int:
            load_document(session, document_id)
            if rows:
                session.execute(insert(ChunkRow), rows)
            return len(rows)

        return self._uow.write(work)

    def locate(self, document_id: int, position: int) -> LocationRecord | None:
        """Where token `position` came from, or None when no location covers it."""
        require_int("position", position)
        found = self._uow.read(lambda s: overlapping_locations(s, document_id, position, position + 1))
        return found[0] if found else None

    def locations_between(self, document_id: int, start: int, end: int) -> list[LocationRecord]:
        """Locations overlapping tokens [start, end), in order."""
        _check_range(start, end)
        return self._uow.read(lambda s: overlapping_locations(s, document_id, start, end))

    def describe_range(self, document_id: int, start: int, end: int) -> str:
        """Display string for tokens [start, end): "page 132", "pages 3-4", "src/app.py:40-88", or ""."""
        return describe_locations(self.locations_between(document_id, start, end))

    def position_of_page(self, document_id: int, page: int) -> int | None:
        """First token of PDF page `page` (1-based), or None when the document has no such page."""
        require_int("page", page, minimum=1)
        query = select(func.min(LocationRow.token_start)).where(
            LocationRow.document_id == document_id, LocationRow.page == page
        )
        return self._uow.read(_first_token(query, document_id))

    def position_of_line(self, document_id: int, path: str, line: int) -> int | None:
        """First token of the location holding line `line` (1-based) of file `path`, or None. Positions
        are as fine as the stored locations: a location of lines 40-88 maps line 60 to its first token."""
        require_text("path", path)
        require_int("line", line, minimum=1)
        query = select(func.min(LocationRow.token_start)).where(
            LocationRow.document_id == document_id,
            LocationRow.path == path,
            LocationRow.line_start <= line,
            LocationRow.line_end >= line,
        )
        return self._uow.read(_first_token(query, document_id))

    def position_of_char(self, document_id: int, char_offset: int) -> int | None:
        """First token of the text location holding character `char_offset`, or None."""
        require_int("char_offset", char_offset)
        query = select(func.min(LocationRow.token_start)).where(
            LocationRow.document_id == document_id,
            LocationRow.char_start <= char_offset,
            LocationRow.char_end > char_offset,
        )
        return self._uow.read(_first_token(query, document_id))

    def get_chunks(self, document_id: int, start: int, end: int) -> list[ChunkRecord]:
        """Stored chunk text overlapping tokens [start, end), in order."""
        _check_range(start, end)
        return self._uow.read(lambda s: [chunk_record(r) for r in overlapping_chunks(s, document_id, start, end)])

    def token_ids(self, document_id: int, start: int, end: int) -> list[int]:
        """Token ids of tokens [start, end), from the stored chunks; `StorageError` when some are not stored."""
        _check_range(start, end)
        rows = self._uow.read(lambda s: overlapping_chunks(s, document_id, start, end))
        ids: list[int] = []
        cursor = start
        for row in rows:
            if row.token_start > cursor or row.token_ids is None:
                break
            chunk_ids = unpack_token_ids(row.token_ids)
            ids.extend(chunk_ids[cursor - row.token_start : min(end, row.token_end) - row.token_start])
            cursor = min(end, row.token_end)
        if cursor < end:
            raise StorageError(f"token ids of tokens [{cursor}, {end}) of document {document_id} are not stored")
        return ids
