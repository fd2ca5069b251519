"""Long-context evaluation: bits per byte with the state carried across chunks and with it reset at every chunk.

A document is read through the same readers and tokenizer as ingest, cut into chunks of the model's chunk
size C aligned to absolute positions, and scored twice:

- carried: chunk k is read from the state after chunk k-1 (what ingest and the reader do);
- reset: every chunk is read from a fresh state.

Inside a chunk, token t+1 is predicted from the logits at token t. The first token of a chunk has no
prediction in the reset mode, so it is left out of BOTH modes: both score exactly the same target tokens
(every position p with p mod C != 0), and their byte counts are identical. Bits per byte =
total nats / ln 2 / total UTF-8 bytes of the scored tokens, where a token's bytes are those of its
vocabulary piece ("▁" is a space, a byte-fallback piece is one byte, control pieces have none).

The same two numbers are bucketed by the scored token's position in its document (POSITION_BUCKETS), per
document and pooled over all documents.

    report = evaluate_paths(["book.pdf", "repo/"], model="path-or-None", max_tokens=None)
    report.bits_per_byte_carried, report.bits_per_byte_reset, report.documents[0].buckets
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sentencepiece as spm
import torch
import torch.nn.functional as F

from megalodoc.ingest.library import load_reader
from megalodoc.ingest.pipeline import Reader
from megalodoc.ingest.sources import SourceError, open_source
from megalodoc.ingest.token_stream import tokenize_source
from megalodoc.model import Megalodon
from megalodoc.model.tokenizer import Tokenizer

# Bucket edges in tokens: the first chunk of a short-context model, then x4 per bucket up to 32K.
BUCKET_EDGES: tuple[int, ...] = (0, 128, 512, 2048, 8192, 32768)
BUCKET_LABELS: tuple[str, ...] = ("0-128", "128-512", "512-2K", "2K-8K", "8K-32K", "32K+")
# Logits of one model call are B*L*V fp32 values; calls hold at most this many bytes of logits (several
# chunks per call when C*V is small, one chunk otherwise).
LOGITS_BYTES_PER_CALL = 128 * 1024 * 1024
# ... and at most this many tokens, which bounds the activations of the (G, C) reset batch.
TOKENS_PER_CALL = 16384

ProgressFn = Callable[[str, int, int], None]  # (document name, tokens scored, tokens in the document)


class EvaluationError(ValueError):
    """A document that cannot be evaluated; the message names the file and the cause."""


@dataclass(frozen=True)
class LossTotals:
    """Sums over scored tokens; additive, so documents and buckets pool by `+`."""

    tokens: int = 0
    bytes: int = 0
    nats_carried: float = 0.0
    nats_reset: float = 0.0

    def __add__(self, other: LossTotals) -> LossTotals:
        return LossTotals(self.tokens + other.tokens, self.bytes + other.bytes,
                          self.nats_carried + other.nats_carried, self.nats_reset + other.nats_reset)

    @property
    def bits_per_byte_carried(self) -> float | None:
        """None when no byte was scored."""
        return self.nats_carried / math.log(2) / self.bytes if self.bytes else None

    @property
    def bits_per_byte_reset(self) -> float | None:
        return self.nats_reset / math.log(2) / self.bytes if self.bytes else None

    def to_dict(self) -> dict[str, object]:
        carried, reset = self.bits_per_byte_carried, self.bits_per_byte_reset
        return {"tokens": self.tokens, "bytes": self.bytes, "bits_per_byte_carried": carried,
                "bits_per_byte_reset": reset,
                "carried_over_reset": carried / reset if carried is not None and reset else None}


@dataclass(frozen=True)
class TokenLosses:
    """One entry per scored token of a document (positions p with p mod C != 0)."""

    positions: torch.Tensor  # (T,) int64: position of the scored token in the document
    nbytes: torch.Tensor  # (T,) int64: UTF-8 bytes of its piece
    carried: torch.Tensor  # (T,) float64 nats, state carried across chunks
    reset: torch.Tensor  # (T,) float64 nats, state reset at every chunk

    def totals(self) -> LossTotals:
        return LossTotals(int(self.positions.numel()), int(self.nbytes.sum()), float(self.carried.sum()),
                          float(self.reset.sum()))

    def buckets(self) -> list[LossTotals]:
        """Totals per POSITION_BUCKETS entry (always len(BUCKET_LABELS) of them, empty ones included)."""
        index = bucket_index(self.positions)  # (T,)
        n = len(BUCKET_LABELS)
        tokens = torch.bincount(index, minlength=n)
        nbytes = torch.bincount(index, weights=self.nbytes.double(), minlength=n)
        carried = torch.bincount(index, weights=self.carried, minlength=n)
        reset = torch.bincount(index, weights=self.reset, minlength=n)
        return [LossTotals(int(tokens[i]), int(nbytes[i]), float(carried[i]), float(reset[i])) for i in range(n)]


def bucket_index(positions: torch.Tensor) -> torch.Tensor:
    """Index into BUCKET_LABELS of each position: bucket i holds BUCKET_EDGES[i] <= p < BUCKET_EDGES[i+1]."""
    edges = torch.tensor(BUCKET_EDGES[1:], dtype=torch.int64)
    return torch.bucketize(positions.to(torch.int64), edges, right=True)


def token_byte_lengths(tokenizer: Tokenizer) -> torch.Tensor:
    """(V,) int64: UTF-8 bytes each vocabulary piece stands for ("▁" is a space; a byte-fallback piece is
    one byte; control and unknown pieces none). With a lossless tokenizer the sum over a token stream is
    the byte length of its decoded text."""
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(tokenizer.model_bytes())
    lengths = []
    for token_id in range(sp.GetPieceSize()):
        if sp.IsByte(token_id):
            lengths.append(1)
        elif sp.IsControl(token_id) or sp.IsUnknown(token_id):
            lengths.append(0)
        else:
            lengths.append(len(sp.IdToPiece(token_id).replace("\u2581", " ").encode("utf-8")))
    return torch.tensor(lengths, dtype=torch.int64)


def _chunk_losses(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """logits (G, n, V), ids (G, n) of G chunks -> (G, n-1) nats of ids[:, 1:] predicted by logits[:, :-1]
    (logsumexp and gather over the whole batch in one call)."""
    G, n, V = logits.shape
    flat = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none")  # (G*(n-1),)
    return flat.view(G, n - 1)


@torch.no_grad()
def document_losses(model: Megalodon, ids: Sequence[int] | torch.Tensor, byte_lengths: torch.Tensor, *,
                    chunks_per_call: int | None = None, on_chunks: Callable[[int], None] | None = None) -> TokenLosses:
    """Per-token nats of `ids` (one document) in both modes. Whole chunks per model call: the carried mode
    feeds G chunks as one (1, G*C) call continuing the state (exact: attention is chunk-local and streaming
    is exact across calls), the reset mode the same G chunks as a (G, C) batch from a fresh state.
    `on_chunks(tokens_done)` is called after each call."""
    C = model.config.chunk_size
    V = model.config.vocab_size
    device = model.embed.weight.device
    tokens = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)  # (T,)
    T = tokens.numel()
    G = chunks_per_call or max(1, min(LOGITS_BYTES_PER_CALL // (C * V * 4), TOKENS_PER_CALL // C))
    carried_parts: list[torch.Tensor] = []
    reset_parts: list[torch.Tensor] = []
    state = None
    full = (T // C) * C
    for start in range(0, full, G * C):
        group = tokens[start : min(full, start + G * C)].to(device)  # (g*C,)
        g = group.numel() // C
        logits, state = model(group.view(1, g * C), state)  # (1, g*C, V)
        carried_parts.append(_chunk_losses(logits.view(g, C, V), group.view(g, C)).reshape(-1).cpu())
        del logits
        logits, _ = model(group.view(g, C), None)  # (g, C, V)
        reset_parts.append(_chunk_losses(logits, group.view(g, C)).reshape(-1).cpu())
        del logits
        if on_chunks is not None:
            on_chunks(start + g * C)
    if T - full > 1:  # the last, partial chunk; a single token there has nothing to score
        tail = tokens[full:].to(device).view(1, T - full)  # (1, r)
        logits, state = model(tail, state)
        carried_parts.append(_chunk_losses(logits, tail).reshape(-1).cpu())
        logits, _ = model(tail, None)
        reset_parts.append(_chunk_losses(logits, tail).reshape(-1).cpu())
    if on_chunks is not None and T > full:
        on_chunks(T)
    positions = torch.arange(T, dtype=torch.int64)
    positions = positions[positions % C != 0]  # (T',) the scored tokens
    empty = torch.zeros(0, dtype=torch.float64)
    carried = torch.cat(carried_parts).double() if carried_parts else empty
    reset = torch.cat(reset_parts).double() if reset_parts else empty
    return TokenLosses(positions, byte_lengths[tokens[positions]], carried, reset)


@dataclass(frozen=True)
class DocumentEvaluation:
    """The evaluation of one path."""

    path: str
    name: str
    kind: str
    tokens_read: int
    truncated: bool
    totals: LossTotals
    buckets: tuple[LossTotals, ...]
    seconds: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "name": self.name, "kind": self.kind, "tokens_read": self.tokens_read,
                "truncated": self.truncated, **self.totals.to_dict(), "buckets": _bucket_dicts(self.buckets),
                "seconds": self.seconds, "notes": list(self.notes)}


@dataclass(frozen=True)
class EvaluationReport:
    """Every document's evaluation, the pooled numbers, and the paths that could not be read."""

    model: dict[str, object]
    chunk_size: int
    max_tokens: int | None
    documents: tuple[DocumentEvaluation, ...]
    errors: tuple[tuple[str, str], ...] = field(default=())  # (path, message)

    @property
    def totals(self) -> LossTotals:
        return sum((d.totals for d in self.documents), LossTotals())

    @property
    def buckets(self) -> tuple[LossTotals, ...]:
        pooled = [LossTotals()] * len(BUCKET_LABELS)
        for d in self.documents:
            pooled = [a + b for a, b in zip(pooled, d.buckets, strict=True)]
        return tuple(pooled)

    @property
    def bits_per_byte_carried(self) -> float | None:
        return self.totals.bits_per_byte_carried

    @property
    def bits_per_byte_reset(self) -> float | None:
        return self.totals.bits_per_byte_reset

    def to_dict(self) -> dict[str, object]:
        """The JSON document: pooled numbers at the top level, then per document."""
        return {"model": self.model, "chunk_size": self.chunk_size, "max_tokens": self.max_tokens,
                **self.totals.to_dict(), "buckets": _bucket_dicts(self.buckets),
                "documents": [d.to_dict() for d in self.documents],
                "errors": [{"path": p, "message": m} for p, m in self.errors]}


def _bucket_dicts(buckets: Iterable[LossTotals]) -> list[dict[str, object]]:
    ends = (*BUCKET_EDGES[1:], None)
    return [{"bucket": label, "start": start, "end": end, **b.to_dict()}
            for label, start, end, b in zip(BUCKET_LABELS, BUCKET_EDGES, ends, buckets, strict=True)]


def read_token_ids(path: str | os.PathLike, tokenizer: Tokenizer, max_tokens: int | None = None
                   ) -> tuple[list[int], str, str, bool, tuple[str, ...]]:
    """(ids, display name, kind, truncated, notes) of a document read as ingest reads it, at most
    `max_tokens` ids. Raises EvaluationError naming the file."""
    try:
        with open_source(Path(path)) as source:
            ids: list[int] = []
            truncated = False
            stream = tokenize_source(source, tokenizer)
            try:
                for piece in stream:
                    ids.extend(piece.ids)
                    if max_tokens is not None and len(ids) >= max_tokens:
                        truncated = len(ids) > max_tokens or next(stream, None) is not None
                        del ids[max_tokens:]
                        break
            finally:
                stream.close()
            notes = tuple(str(n) for n in (*source.warnings, *source.skipped))
            name, kind = source.name, source.kind
    except SourceError as exc:
        raise EvaluationError(str(exc)) from exc
    if not ids:
        raise EvaluationError(f"{path}: no text to evaluate (the reader found no tokens)")
    return ids, name, kind, truncated, notes


def evaluate_document(reader: Reader, path: str | os.PathLike, byte_lengths: torch.Tensor, *,
                      max_tokens: int | None = None, chunks_per_call: int | None = None,
                      on_progress: ProgressFn | None = None) -> DocumentEvaluation:
    """Evaluate one path with a loaded reader (model + tokenizer); see `document_losses`."""
    started = time.perf_counter()
    ids, name, kind, truncated, notes = read_token_ids(path, reader.tokenizer, max_tokens)
    report = None if on_progress is None else (lambda done: on_progress(name, done, len(ids)))
    losses = document_losses(reader.model, ids, byte_lengths, chunks_per_call=chunks_per_call, on_chunks=report)
    return DocumentEvaluation(str(path), name, kind, len(ids), truncated, losses.totals(), tuple(losses.buckets()),
                              time.perf_counter() - started, notes)


def evaluate_paths(paths: Iterable[str | os.PathLike], model: str | os.PathLike | Megalodon | None = None, *,
                   max_tokens: int | None = None, device: str | torch.device | None = None,
                   chunks_per_call: int | None = None, on_progress: ProgressFn | None = None) -> EvaluationReport:
    """Evaluate every path with `model` (a folder, a Hub id, an instance, or None for the default model)
    and the tokenizer shipped with it. A path that cannot be read is recorded in `errors` (its message
    names the file) and the others are still evaluated. A model without a tokenizer raises IngestError;
    an unusable model folder raises CheckpointError."""
    if max_tokens is not None and max_tokens < 2:
        raise ValueError(f"max_tokens={max_tokens} must be at least 2 (one token predicts the next)")
    if chunks_per_call is not None and chunks_per_call < 1:
        raise ValueError(f"chunks_per_call={chunks_per_call} must be >= 1")
    reader = load_reader(model)
    if device is not None:
        reader = Reader(reader.model.to(device), reader.tokenizer, reader.model_fingerprint)
    byte_lengths = token_byte_lengths(reader.tokenizer)
    documents, errors = [], []
    for path in paths:
        try:
            documents.append(evaluate_document(reader, path, byte_lengths, max_tokens=max_tokens,
                                               chunks_per_call=chunks_per_call, on_progress=on_progress))
        except EvaluationError as exc:
            errors.append((str(path), str(exc)))
    source = reader.model.source_dir
    info = {"path": None if source is None else str(source), "fingerprint": reader.model_fingerprint,
            "parameters": reader.model.num_parameters(), "config": reader.model.config.to_dict()}
    return EvaluationReport(info, reader.model.config.chunk_size, max_tokens, tuple(documents), tuple(errors))
