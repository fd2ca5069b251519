"""Surprise: per-chunk bits per byte along a document, computed group by group and stored."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from megalodoc.ingest.evaluate import token_byte_lengths


def one_shot_chunk_bits(service, doc) -> list[tuple[int, float]]:
    """The twin: the whole document in one model call, every token's loss, summed per chunk."""
    ids = torch.tensor(service.store.token_ids(doc.id, 0, doc.committed_position))
    with torch.no_grad():
        logits, _ = service.bundle.model(ids[None], None)  # (1, n, V)
    nats = F.cross_entropy(logits[0, :-1], ids[1:], reduction="none").double()  # token t+1 from t
    nbytes = token_byte_lengths(service.tokenizer)[ids[1:]]
    C = service.bundle.chunk_size
    chunk = torch.arange(1, len(ids)) // C
    return [(c * C, float(nats[chunk == c].sum()) / math.log(2) / int(nbytes[chunk == c].sum()))
            for c in range(int(chunk.max()) + 1)]


def test_surprise_equals_the_one_shot_twin_and_is_stored(service, book):
    doc = service.ingest(book)
    points = service.surprise(doc)
    expected = one_shot_chunk_bits(service, doc)
    assert [p.position for p in points] == [start for start, _ in expected]
    for point, (_, bits) in zip(points, expected, strict=True):
        assert math.isclose(point.bits_per_byte, bits, rel_tol=1e-4), point
    assert all(p.location.startswith("chars ") for p in points)
    position, bits, location = points[0]  # a plain (position, bits_per_byte, location) triple
    assert (position, bits, location) == tuple(points[0]) and points[0].start == 0
    assert [(p.start, p.end) for p in points[:2]] == [(0, 16), (16, 32)] and points[-1].end == doc.committed_position
    stored = service.store.chunk_losses(doc.id, service.bundle.fingerprint)
    assert [(s.start, s.bits_per_byte) for s in stored] == [(p.position, p.bits_per_byte) for p in points]
    calls = []
    assert service.surprise(doc, on_progress=lambda done, total: calls.append(done)) == points
    assert calls == []  # read from the store, not computed again
    assert service.surprise(doc, recompute=True, on_progress=lambda done, total: calls.append(done)) == points
    assert calls[-1] == doc.committed_position
    service.delete_document(doc)
    assert service.store.chunk_losses(doc.id, service.bundle.fingerprint) == []


def test_stored_only_never_computes(service, pdf):
    doc = service.ingest(pdf)
    assert service.surprise(doc, stored_only=True) == []
    computed = service.surprise(doc)
    assert service.surprise(doc, stored_only=True) == computed


def test_ingest_can_compute_the_surprise_curve(service, pdf):
    doc = service.ingest(pdf, surprise=True)
    stored = service.store.chunk_losses(doc.id, service.bundle.fingerprint)
    assert stored and stored[-1].end == doc.committed_position
    assert {p.location for p in service.surprise(doc)} == {"page 1", "page 2", "page 3", "page 4"}
