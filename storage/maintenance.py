"""Health checks of a store: database integrity, committed positions, every blob's checksum."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from megalodoc.storage.blob_encoding import BlobDecodeError, decode_blob
from megalodoc.storage.models import Document, SnapshotRow, StateBlob
from megalodoc.storage.snapshots import sha256_hex
from megalodoc.storage.unit import UnitOfWork

_BLOB_QUERY = select(StateBlob.data, StateBlob.encoding, StateBlob.size_bytes)


class MaintenanceMixin:
    _uow: UnitOfWork

    def check_integrity(self, verify_blobs: bool = True) -> list[str]:
        """Problems found (empty when healthy): SQLite's integrity and foreign-key checks and the full-text
        index's consistency; every document's committed position equal to its last snapshot; and, with
        `verify_blobs`, every state blob against its sha256."""
        problems = self._uow.read(_database_checks)
        problems += self._uow.read(_position_checks)
        if verify_blobs:
            digests = self._uow.read(lambda s: list(s.scalars(select(StateBlob.sha256).order_by(StateBlob.sha256))))
            for digest in digests:
                row = self._uow.read(lambda s, d=digest: s.execute(_BLOB_QUERY.where(StateBlob.sha256 == d)).first())
                if row is None:
                    continue
                try:
                    intact = sha256_hex(decode_blob(row.data, row.encoding, row.size_bytes)) == digest
                except BlobDecodeError:
                    intact = False
                if not intact:
                    problems.append(f"state blob {digest[:16]}... does not match its sha256 (corrupt)")
        return problems


def _database_checks(session: Session) -> list[str]:
    if session.get_bind().dialect.name != "sqlite":
        return []
    problems = []
    result = [row[0] for row in session.execute(text("PRAGMA integrity_check"))]
    if result != ["ok"]:
        problems += [f"integrity_check: {line}" for line in result]
    for row in session.execute(text("PRAGMA foreign_key_check")):
        problems.append(f"foreign_key_check: table {row[0]} row {row[1]} points at a missing {row[2]} row")
    try:
        session.execute(text("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)"))
    except DBAPIError as exc:
        problems.append(f"full-text index out of sync with chunks: {exc.orig}")
    return problems


def _position_checks(session: Session) -> list[str]:
    last = (
        select(SnapshotRow.document_id, func.max(SnapshotRow.position).label("last"))
        .where(SnapshotRow.kind == "document")
        .group_by(SnapshotRow.document_id)
        .subquery()
    )
    rows = session.execute(
        select(Document.id, Document.committed_position, last.c.last).outerjoin(last, last.c.document_id == Document.id)
    ).all()
    return [
        f"document {row.id}: committed position {row.committed_position} but last snapshot at {row.last or 0}"
        for row in rows
        if row.committed_position != (row.last or 0)
    ]
