"""Thinning a document's snapshots to a wider spacing, and giving the freed space back to the file system.

A snapshot every chunk costs about a kilobyte of state per token; a wider spacing costs proportionally
less, and `state_at` then re-reads more tokens (at most the spacing) from the stored ids. `thin_snapshots`
turns a document read with a narrow spacing into what a wider one would have stored.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy import Engine, delete, exists, func, select
from sqlalchemy.orm import Session

from megalodoc.storage.convert import require_int
from megalodoc.storage.documents import load_document
from megalodoc.storage.errors import StorageError
from megalodoc.storage.models import SessionRow, SnapshotRow, StateBlob
from megalodoc.storage.unit import UnitOfWork
from megalodoc.storage.wal_checkpointer import WalCheckpointer

logger = logging.getLogger(__name__)

_TAIL_ID_BYTES = 4  # tail ids are stored as int32


@dataclass(frozen=True)
class ThinningReport:
    """What `thin_snapshots` did: snapshots kept and deleted, state blobs deleted and their stored bytes."""

    document_id: int
    kept: int
    deleted: int
    blobs_deleted: int
    blob_bytes_freed: int


class CompactionMixin:
    _uow: UnitOfWork
    _engine: Engine
    url: str
    checkpointer: WalCheckpointer | None

    def thin_snapshots(self, document_id: int, spacing: int) -> ThinningReport:
        """Keep the document snapshots at least `spacing` tokens apart (by the position of their state,
        walking from the start: a snapshot is kept when its state lies `spacing` or more tokens after the
        last one kept for the spacing, so a document read with a snapshot every chunk keeps what a wider
        spacing would have written), plus the last snapshot (the document's end, where reading resumes) and every one a
        session starts from; delete the others and the state blobs nothing refers to any more, in one
        transaction. Chunk text, token ids and locations stay: `state_at` re-reads from them."""
        require_int("spacing", spacing, minimum=1)

        def work(session: Session) -> ThinningReport:
            load_document(session, document_id, lock=True)
            rows = session.execute(
                select(SnapshotRow.id, SnapshotRow.position, SnapshotRow.tail_ids, SnapshotRow.blob_sha256)
                .where(SnapshotRow.document_id == document_id, SnapshotRow.kind == "document")
                .order_by(SnapshotRow.position)
            ).all()
            used = set(
                session.scalars(
                    select(SessionRow.snapshot_id).where(SessionRow.snapshot_id.in_([row.id for row in rows]))
                )
            )
            doomed: list[int] = []
            last_kept = 0
            for index, row in enumerate(rows):
                state_position = row.position - len(row.tail_ids or b"") // _TAIL_ID_BYTES
                if state_position - last_kept >= spacing:
                    last_kept = state_position  # the spacing counts from these only
                elif index != len(rows) - 1 and row.id not in used:
                    doomed.append(row.id)
            digests = {row.blob_sha256 for row in rows if row.id in set(doomed)}
            for start in range(0, len(doomed), 500):  # bounded IN lists
                session.execute(delete(SnapshotRow).where(SnapshotRow.id.in_(doomed[start : start + 500])))
            orphans = [
                digest
                for digest in sorted(digests)
                if not session.scalar(select(exists().where(SnapshotRow.blob_sha256 == digest)))
            ]
            freed = 0
            for start in range(0, len(orphans), 500):
                batch = orphans[start : start + 500]
                freed += session.scalar(
                    select(func.coalesce(func.sum(func.length(StateBlob.data)), 0)).where(StateBlob.sha256.in_(batch))
                )
                session.execute(delete(StateBlob).where(StateBlob.sha256.in_(batch)))
            return ThinningReport(document_id, len(rows) - len(doomed), len(doomed), len(orphans), int(freed))

        return self._uow.write(work)

    def vacuum(self) -> bool:
        """SQLite: rebuild the file so that the space freed by deletions goes back to the file system (and
        empty the WAL, unless another connection is checkpointing or writing meanwhile: that is logged as
        a warning, and a later checkpoint copies the WAL). Returns False, doing nothing, on other databases
        (PostgreSQL reuses freed space after its autovacuum; `VACUUM FULL` there is an administrator's
        decision)."""
        engine = self._engine
        if engine.dialect.name != "sqlite":
            return False
        # the store's background checkpoint would make the TRUNCATE below return busy and leave the WAL
        paused = contextlib.nullcontext() if self.checkpointer is None else self.checkpointer.paused()
        # the driver runs in autocommit mode: VACUUM needs no transaction
        with paused, contextlib.closing(engine.raw_connection()) as connection:
            try:
                with contextlib.closing(connection.cursor()) as cursor:
                    cursor.execute("VACUUM")
                    busy, log, done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except engine.dialect.dbapi.Error as exc:
                raise StorageError(f"VACUUM of database {self.url} failed: {exc}") from exc
        if busy:  # another connection's checkpoint or writer: the rebuilt file is whole, the WAL stays
            logger.warning("database %s: vacuumed, but the WAL (%d frames, %d copied) could not be emptied: "
                           "another connection was checkpointing or writing; a later checkpoint copies it",
                           self.url, log, done)
        return True
