"""Stored chunk losses (the surprise curve): replace per (document, model), read in order, checked."""

from __future__ import annotations

import pytest
from storage_testkit import new_document

from megalodoc.storage import ChunkLoss, NotFoundError, open_store


def test_put_replaces_and_reads_back_in_order(db_url: str) -> None:
    with open_store(db_url) as store:
        document = new_document(store)
        losses = [ChunkLoss(0, 16, 2.5), ChunkLoss(16, 32, 1.25), ChunkLoss(32, 40, 0.0)]
        assert store.put_chunk_losses(document.id, "model-a", losses) == 3
        store.put_chunk_losses(document.id, "model-b", [ChunkLoss(0, 16, 9.0)])
        assert store.chunk_losses(document.id, "model-a") == losses
        store.put_chunk_losses(document.id, "model-a", losses[:1])
        assert store.chunk_losses(document.id, "model-a") == losses[:1]
        assert store.chunk_losses(document.id, "model-b") == [ChunkLoss(0, 16, 9.0)]
        with pytest.raises(ValueError, match="in order"):
            store.put_chunk_losses(document.id, "model-a", [ChunkLoss(16, 32, 1.0), ChunkLoss(0, 16, 1.0)])
        with pytest.raises(ValueError, match="finite"):
            store.put_chunk_losses(document.id, "model-a", [ChunkLoss(0, 16, float("nan"))])
        assert store.chunk_losses(document.id, "model-a") == losses[:1]  # refused writes change nothing
        with pytest.raises(NotFoundError):
            store.put_chunk_losses(document.id + 1, "model-a", losses)
        store.delete_document(document.id)
        assert store.chunk_losses(document.id, "model-b") == []
