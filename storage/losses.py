"""Per-chunk losses of documents (the surprise curve): written in one transaction, read in order."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from megalodoc.storage.convert import require_text
from megalodoc.storage.documents import load_document
from megalodoc.storage.models import ChunkLossRow, utcnow
from megalodoc.storage.records import ChunkLoss
from megalodoc.storage.row_ids import guard_ids
from megalodoc.storage.unit import UnitOfWork


def _check(losses: Sequence[ChunkLoss]) -> None:
    previous_end = 0
    for loss in losses:
        if not isinstance(loss, ChunkLoss):
            raise TypeError(f"losses must be ChunkLoss values, got {type(loss).__name__}")
        if loss.start < previous_end:
            raise ValueError(f"chunk losses must be in order without overlap: [{loss.start}, {loss.end}) "
                             f"starts before {previous_end}")
        if not math.isfinite(loss.bits_per_byte) or loss.bits_per_byte < 0:
            raise ValueError(f"chunk [{loss.start}, {loss.end}): bits per byte {loss.bits_per_byte} must be "
                             "finite and >= 0")
        previous_end = loss.end


class LossesMixin:
    _uow: UnitOfWork

    def put_chunk_losses(self, document_id: int, model_fingerprint: str, losses: Sequence[ChunkLoss]) -> int:
        """Replace the document's chunk losses for this model by `losses` (in order, not overlapping), in
        one transaction. Returns how many were stored."""
        require_text("model_fingerprint", model_fingerprint)
        _check(losses)
        now = utcnow()
        rows = [{"document_id": document_id, "model_fingerprint": model_fingerprint, "token_start": loss.start,
                 "token_end": loss.end, "bits_per_byte": float(loss.bits_per_byte), "created_at": now}
                for loss in losses]

        def work(session: Session) -> int:
            load_document(session, document_id)
            session.execute(delete(ChunkLossRow).where(ChunkLossRow.document_id == document_id,
                                                       ChunkLossRow.model_fingerprint == model_fingerprint))
            if rows:
                session.execute(insert(ChunkLossRow), rows)
            return len(rows)

        return self._uow.write(work)

    def chunk_losses(self, document_id: int, model_fingerprint: str) -> list[ChunkLoss]:
        """The document's stored chunk losses for this model, by position ([] when none are stored)."""
        query = (
            select(ChunkLossRow.token_start, ChunkLossRow.token_end, ChunkLossRow.bits_per_byte)
            .where(ChunkLossRow.document_id == document_id, ChunkLossRow.model_fingerprint == model_fingerprint)
            .order_by(ChunkLossRow.token_start)
        )
        return self._uow.read(guard_ids(
            lambda s: [ChunkLoss(int(a), int(b), float(c)) for a, b, c in s.execute(query)], [], document_id))
