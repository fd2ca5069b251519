"""Surprise along a document: bits per byte of every chunk as the model predicts it, with the state
carried from the document's start (what ingest read). A run of high values marks text the model finds
garbled or unusual: a bad PDF extraction, a table, another language.

Token t is predicted by the logits after token t-1 (the document's first token has no prediction); a
chunk's value is the nats of its predicted tokens / ln 2 / the UTF-8 bytes those tokens stand for.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from megalodoc.ingest.evaluate import token_byte_lengths
from megalodoc.model import ModelBundle
from megalodoc.storage import ChunkLoss, DocumentRecord, LocationRecord, Store

# Logits of one model call are n * V fp32 values; a call reads as many whole chunks as fit in this.
LOGITS_BYTES_PER_CALL = 64 * 1024 * 1024


class _Point(NamedTuple):
    position: int
    bits_per_byte: float
    location: str


class SurprisePoint(_Point):
    """One chunk of the curve, a (position, bits_per_byte, location) triple: the chunk's first token, its
    bits per byte, and where it lies ("page 3"); `start` and `end` give the chunk's token range."""

    end: int

    def __new__(cls, position: int, bits_per_byte: float, location: str, end: int) -> SurprisePoint:
        point = super().__new__(cls, position, bits_per_byte, location)
        point.end = end  # an attribute, not a tuple field: the point stays a triple
        return point

    @property
    def start(self) -> int:
        return self.position


def chunk_losses(store: Store, bundle: ModelBundle, document: DocumentRecord,
                 on_progress: Callable[[int, int], None] | None = None) -> list[ChunkLoss]:
    """Bits per byte of every chunk of what was read of `document` (see the module docstring).
    `on_progress(tokens_done, tokens_total)` is called after every model call."""
    C, V = bundle.chunk_size, bundle.model.config.vocab_size
    total = document.committed_position
    group = max(1, LOGITS_BYTES_PER_CALL // (C * V * 4)) * C  # whole chunks per call
    byte_lengths = token_byte_lengths(bundle.require_tokenizer())  # (V,)
    losses: list[ChunkLoss] = []
    state, last_logits = None, None  # last_logits (V,): the prediction of the next group's first token
    with torch.no_grad():
        for start in range(0, total, group):
            end = min(total, start + group)
            ids = torch.tensor(store.token_ids(document.id, start, end), dtype=torch.int64)  # (n,)
            logits, state = bundle.model(ids.to(bundle.device)[None], state)  # (1, n, V)
            predictions = logits[0].float().cpu()  # (n, V): row i predicts token i + 1
            if last_logits is not None:
                predictions = torch.cat([last_logits[None], predictions])  # (n + 1, V): row i predicts token i
                targets, first = ids, start
            else:
                targets, first = ids[1:], start + 1  # the document's first token has no prediction
            nats = F.cross_entropy(predictions[: len(targets)], targets, reduction="none").double()  # (m,)
            nbytes = byte_lengths[targets]  # (m,)
            last_logits = logits[0, -1].float().cpu()
            for chunk_start in range(start, end, C):
                chunk_end = min(end, chunk_start + C)
                lo, hi = max(chunk_start, first) - first, chunk_end - first
                chunk_bytes = int(nbytes[lo:hi].sum())
                if chunk_bytes > 0:
                    bits = float(nats[lo:hi].sum()) / math.log(2) / chunk_bytes
                    losses.append(ChunkLoss(chunk_start, chunk_end, bits))
            if on_progress is not None:
                on_progress(end, total)
    return losses


def surprise_points(losses: list[ChunkLoss], locations: list[LocationRecord]) -> list[SurprisePoint]:
    """The losses with the display location of each chunk's first token."""
    starts = [location.start for location in locations]
    points = []
    for loss in losses:
        index = bisect.bisect_right(starts, loss.start) - 1
        where = locations[index].display if index >= 0 and locations[index].end > loss.start else ""
        points.append(SurprisePoint(loss.start, loss.bits_per_byte, where, loss.end))
    return points
