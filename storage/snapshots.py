"""Snapshots: content-addressed state blobs, written together with the document's committed position and
the text and locations read since the previous snapshot, in one transaction; verified on every read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from megalodoc.storage.blob_encoding import BlobDecodeError, decode_blob, encode_blob
from megalodoc.storage.convert import (
    SNAPSHOT_COLUMNS,
    pack_token_ids,
    require_int,
    require_text,
    snapshot_info,
    snapshot_infos,
    to_json,
)
from megalodoc.storage.documents import load_document
from megalodoc.storage.errors import (
    ClaimLostError,
    CorruptSnapshotError,
    DocumentStatusError,
    NotFoundError,
    SnapshotExistsError,
    SnapshotOrderError,
    StorageError,
)
from megalodoc.storage.locations import chunk_rows, location_rows
from megalodoc.storage.models import ChunkRow, Document, LocationRow, SnapshotRow, StateBlob, utcnow
from megalodoc.storage.records import SNAPSHOT_KINDS, ChunkText, Location, SnapshotInfo, check_tail_ids
from megalodoc.storage.row_ids import can_exist, guard_ids
from megalodoc.storage.status import DocumentStatus
from megalodoc.storage.unit import UnitOfWork


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PreparedBlob:
    """State bytes ready to store: the sha256 and size of the original bytes, the encoded form to write."""

    digest: str
    size: int
    stored: bytes
    encoding: str


def prepare_blob(state_bytes: bytes, encoding: str) -> PreparedBlob:
    """Hash and encode outside the transaction (the encoding is lossless; reads check the hash)."""
    data = bytes(state_bytes)
    return PreparedBlob(sha256_hex(data), len(data), encode_blob(data, encoding), encoding)


def _intact(stored: Row | None, digest: str) -> bool:
    """Whether a stored blob row (data, encoding, size_bytes) decodes to bytes with sha256 `digest`."""
    if stored is None:
        return False
    try:
        return sha256_hex(decode_blob(stored.data, stored.encoding, stored.size_bytes)) == digest
    except BlobDecodeError:
        return False


# Statements of a snapshot write, built once: an ingest writes one snapshot per model call, and building
# and caching a statement each time cost more than running it on SQLite (Python time the reading waits for).
_BLOBS, _SNAPSHOTS = StateBlob.__table__, SnapshotRow.__table__
_NEW_BLOB = {
    "sqlite": sqlite_insert(_BLOBS).on_conflict_do_nothing(index_elements=["sha256"]),
    "postgresql": postgresql_insert(_BLOBS).on_conflict_do_nothing(index_elements=["sha256"]),
}
_NEW_SNAPSHOT_RETURNING_ID = insert(_SNAPSHOTS).returning(_SNAPSHOTS.c.id)
_NEW_CHUNKS, _NEW_LOCATIONS = insert(ChunkRow.__table__), insert(LocationRow.__table__)


def _move_committed_position(with_claim: bool) -> Any:
    """The conditional update that checks everything a new snapshot needs (model, status, claim, order)
    and moves the document's committed position. Parameters (named apart from the columns, as SQLAlchemy
    requires): b_document, b_model, b_position, b_now, and b_worker when `with_claim`."""
    documents = Document.__table__.c
    conditions = [
        documents.id == bindparam("b_document"),
        documents.model_fingerprint == bindparam("b_model"),
        documents.status == DocumentStatus.INGESTING.value,
        documents.committed_position < bindparam("b_position"),
    ]
    if with_claim:
        conditions.append(documents.claimed_by == bindparam("b_worker"))
    return (update(Document.__table__).where(*conditions)
            .values(committed_position=bindparam("b_position"), updated_at=bindparam("b_now")))


_MOVE_COMMITTED = {False: _move_committed_position(False), True: _move_committed_position(True)}


def put_blob(session: Session, blob: PreparedBlob) -> None:
    """Store the blob under its sha256 unless already there. A stored copy that no longer matches its hash
    (damaged on disk) is overwritten with these good bytes. A new blob (the usual case) costs one
    statement: an insert that does nothing when the hash is already stored."""
    digest = blob.digest
    values = {"sha256": digest, "size_bytes": blob.size, "data": blob.stored, "encoding": blob.encoding,
              "created_at": utcnow()}
    new_blob = _NEW_BLOB.get(session.get_bind().dialect.name)
    if new_blob is not None:
        if session.execute(new_blob, values).rowcount == 1:
            return
    elif session.scalar(select(StateBlob.size_bytes).where(StateBlob.sha256 == digest)) is None:
        session.execute(insert(StateBlob).values(values))
        return
    stored = session.execute(
        select(StateBlob.data, StateBlob.encoding, StateBlob.size_bytes).where(StateBlob.sha256 == digest)
    ).first()
    if not _intact(stored, digest):
        session.execute(
            update(StateBlob)
            .where(StateBlob.sha256 == digest)
            .values(data=blob.stored, encoding=blob.encoding, size_bytes=blob.size)
        )


def new_snapshot_values(
    document_id: int,
    kind: str,
    position: int,
    blob: PreparedBlob,
    model_fingerprint: str,
    schema_version: int,
    metadata_json: str,
    tail_ids: tuple[int, ...] = (),
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """Column values of a new snapshot row."""
    return {
        "document_id": document_id,
        "kind": kind,
        "position": position,
        "blob_sha256": blob.digest,
        "size_bytes": blob.size,
        "model_fingerprint": model_fingerprint,
        "schema_version": schema_version,
        "metadata_json": metadata_json,
        "created_at": created_at or utcnow(),
        "tail_ids": pack_token_ids(tail_ids) if tail_ids else None,
    }


def insert_snapshot(session: Session, values: dict[str, Any]) -> int:
    """Insert a snapshot row (one statement where the database returns the new id); returns its id."""
    if session.get_bind().dialect.insert_returning:
        return session.execute(_NEW_SNAPSHOT_RETURNING_ID, values).scalar_one()
    row = SnapshotRow(**values)
    session.add(row)
    session.flush()
    return row.id


def check_state_args(position: int, state_bytes: bytes, model_fingerprint: str, schema_version: int) -> None:
    require_int("position", position)
    if not isinstance(state_bytes, (bytes, bytearray, memoryview)) or len(state_bytes) == 0:
        raise ValueError(f"state_bytes must be non-empty bytes, got {type(state_bytes).__name__}")
    require_text("model_fingerprint", model_fingerprint)
    require_int("schema_version", schema_version)


def check_fingerprint(document: Document, model_fingerprint: str) -> None:
    if document.model_fingerprint != model_fingerprint:
        raise ValueError(
            f"state from model {model_fingerprint[:16]}... cannot be stored for document {document.id}, "
            f"which is read by model {document.model_fingerprint[:16]}..."
        )


class SnapshotsMixin:
    _uow: UnitOfWork
    state_encoding: str

    def add_snapshot(
        self,
        document_id: int,
        position: int,
        state_bytes: bytes,
        model_fingerprint: str,
        schema_version: int,
        metadata: dict[str, Any] | None = None,
        *,
        chunks: Sequence[ChunkText] = (),
        locations: Sequence[Location] = (),
        worker_id: str | None = None,
        tail_ids: Sequence[int] = (),
    ) -> SnapshotInfo:
        """Store the state at chunk boundary `position` of an "ingesting" document, in ONE transaction with:
        the blob (sha256, deduplicated), the snapshot row, `chunks` and `locations` (the text read since
        the previous snapshot; every range must end at or before `position`), and the document's
        committed position moved to `position`. A crash leaves all of it or none of it.

        Positions must increase: `position` must lie after the committed position (`SnapshotOrderError`).
        Re-adding the snapshot already stored at (document, position) with the same bytes is a no-op that
        returns it (chunks and locations are then not added again); different bytes raise
        `SnapshotExistsError`. With `worker_id`, the write is refused (`ClaimLostError`) unless that worker
        still holds the document's claim. `schema_version` is the version of the state's own format.

        With `tail_ids`, `state_bytes` is the state at the chunk boundary `position - len(tail_ids)` and the
        ids are the tokens after it (the end of a document that is not a whole number of chunks): a reader
        restores the state and re-reads them. Stored states are thus always chunk-boundary states.
        """
        check_state_args(position, state_bytes, model_fingerprint, schema_version)
        tail = check_tail_ids(position, tail_ids)
        metadata_json = to_json("snapshot metadata", metadata)
        new_chunks = chunk_rows(document_id, chunks, up_to=position)
        new_locations = location_rows(document_id, locations, up_to=position)
        blob = prepare_blob(state_bytes, self.state_encoding)
        digest = blob.digest

        def refused(session: Session) -> SnapshotInfo:
            """Why the conditional update below moved nothing: the stored identical snapshot, or an error."""
            document = load_document(session, document_id, lock=True)
            check_fingerprint(document, model_fingerprint)
            existing = session.execute(
                select(*SNAPSHOT_COLUMNS).where(
                    SnapshotRow.document_id == document_id,
                    SnapshotRow.kind == "document",
                    SnapshotRow.position == position,
                )
            ).first()
            if existing is not None:
                stored = snapshot_info(existing)
                if stored.blob_sha256 == digest and stored.tail_ids == tail:
                    return stored
                raise SnapshotExistsError(
                    f"document {document_id} already has a different snapshot (id {existing.id}) at position "
                    f"{position}; stored snapshots are never replaced"
                )
            if document.status != DocumentStatus.INGESTING:
                raise DocumentStatusError(
                    f"document {document_id} is {document.status}, not ingesting: snapshot at {position} refused"
                )
            if worker_id is not None and document.claimed_by != worker_id:
                raise ClaimLostError(
                    f"worker {worker_id} no longer holds document {document_id} "
                    f"(held by {document.claimed_by or 'nobody'}): snapshot at {position} refused"
                )
            if position <= document.committed_position:
                raise SnapshotOrderError(
                    f"snapshot position {position} of document {document_id} is not after its committed "
                    f"position {document.committed_position}"
                )
            raise StorageError(f"snapshot at {position} of document {document_id} refused for no known reason")

        def work(session: Session) -> SnapshotInfo:
            # One conditional update checks everything a new snapshot needs (model, status, claim, order)
            # and moves the committed position; only when it moves nothing are the causes looked up. No
            # document snapshot lies after the committed position, so none can exist at `position` here.
            now = utcnow()
            parameters = {"b_document": document_id, "b_model": model_fingerprint, "b_position": position,
                          "b_now": now}
            if worker_id is not None:
                parameters["b_worker"] = worker_id
            moved = can_exist(session, document_id) and session.execute(
                _MOVE_COMMITTED[worker_id is not None], parameters).rowcount == 1
            if not moved:
                return refused(session)
            put_blob(session, blob)
            row = new_snapshot_values(
                document_id, "document", position, blob, model_fingerprint, schema_version, metadata_json, tail, now
            )
            snapshot_id = insert_snapshot(session, row)
            if new_chunks:
                session.execute(_NEW_CHUNKS, new_chunks)
            if new_locations:
                session.execute(_NEW_LOCATIONS, new_locations)
            return SnapshotInfo(
                id=snapshot_id, document_id=document_id, kind="document", position=position, blob_sha256=digest,
                size_bytes=blob.size, model_fingerprint=model_fingerprint, schema_version=schema_version,
                metadata=json.loads(metadata_json), created_at=now, tail_ids=tail,
            )

        return self._uow.write(work)

    def get_snapshot(self, snapshot_id: int) -> SnapshotInfo:
        """The snapshot's description (no bytes); `NotFoundError` when there is none."""
        query = select(*SNAPSHOT_COLUMNS).where(SnapshotRow.id == snapshot_id)
        row = self._uow.read(guard_ids(lambda s: s.execute(query).first(), None, snapshot_id))
        if row is None:
            raise NotFoundError(f"no snapshot with id {snapshot_id}")
        return snapshot_info(row)

    def list_snapshots(self, document_id: int, kind: str = "document") -> list[SnapshotInfo]:
        """The document's snapshots of `kind` ("document" or "turn") by position. Never loads blobs."""
        if kind not in SNAPSHOT_KINDS:
            raise ValueError(f"unknown snapshot kind {kind!r}; expected one of {', '.join(SNAPSHOT_KINDS)}")
        query = (
            select(*SNAPSHOT_COLUMNS)
            .where(SnapshotRow.document_id == document_id, SnapshotRow.kind == kind)
            .order_by(SnapshotRow.position, SnapshotRow.id)
        )

        def work(session: Session) -> list[SnapshotInfo]:
            if not can_exist(session, document_id):
                raise NotFoundError(f"no document with id {document_id}")
            rows = session.connection().execute(query).all()  # Core rows, no ORM loading
            if not rows and session.get(Document, document_id) is None:
                raise NotFoundError(f"no document with id {document_id}")
            return snapshot_infos(rows)

        return self._uow.read(work)

    def latest_snapshot_at(self, document_id: int, position: int) -> SnapshotInfo | None:
        """The document snapshot at the largest position <= `position`, or None when there is none."""
        require_int("position", position)
        query = (
            select(*SNAPSHOT_COLUMNS)
            .where(
                SnapshotRow.document_id == document_id,
                SnapshotRow.kind == "document",
                SnapshotRow.position <= position,
            )
            .order_by(SnapshotRow.position.desc())
            .limit(1)
        )

        def work(session: Session) -> SnapshotInfo | None:
            row = session.execute(query).first()
            return None if row is None else snapshot_info(row)

        return self._uow.read(guard_ids(work, None, document_id))

    def load_snapshot_bytes(self, snapshot_id: int) -> bytes:
        """The snapshot's state bytes, verified against their sha256 on every read. A mismatch raises
        `CorruptSnapshotError` naming the snapshot; wrong state is never returned."""
        query = (
            select(
                SnapshotRow.id,
                SnapshotRow.document_id,
                SnapshotRow.position,
                SnapshotRow.blob_sha256,
                SnapshotRow.size_bytes,
                StateBlob.data,
                StateBlob.encoding,
            )
            .join(StateBlob, StateBlob.sha256 == SnapshotRow.blob_sha256)
            .where(SnapshotRow.id == snapshot_id)
        )
        row = self._uow.read(guard_ids(lambda s: s.execute(query).first(), None, snapshot_id))
        if row is None:
            raise NotFoundError(f"no snapshot with id {snapshot_id}")
        return verified_bytes(row)


def verified_bytes(row: Row) -> bytes:
    """The row's blob bytes, decoded, after checking length and sha256 against the snapshot's record."""
    try:
        data = decode_blob(row.data, row.encoding, row.size_bytes)
    except BlobDecodeError as exc:
        raise CorruptSnapshotError(
            f"snapshot {row.id} (document {row.document_id}, position {row.position}) is corrupt: its "
            f"{row.encoding} state blob does not decode ({exc}); the state was not loaded. Resume from an "
            "earlier snapshot or ingest the document again."
        ) from exc
    actual = sha256_hex(data)
    if actual != row.blob_sha256 or len(data) != row.size_bytes:
        raise CorruptSnapshotError(
            f"snapshot {row.id} (document {row.document_id}, position {row.position}) is corrupt: its state "
            f"blob should be {row.size_bytes} bytes with sha256 {row.blob_sha256[:16]}..., but the stored "
            f"bytes are {len(data)} long with sha256 {actual[:16]}...; the state was not loaded. Resume from "
            "an earlier snapshot or ingest the document again."
        )
    return data
