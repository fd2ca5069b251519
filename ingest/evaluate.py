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

The same two numbers are bucketed by the scored token's position in its document (BUCKET_LABELS), per
document and pooled over all documents, and by its offset inside its chunk (`chunk_offset_edges`: 1, 2-3,
4-7, ... up to C-1), which shows where in a chunk the carried state makes the difference.

    report = evaluate_paths(["book.pdf", "repo/"], model="path-or-None", max_tokens=None)
    report.bits_per_byte_carried, report.bits_per_byte_reset, report.documents[0].buckets
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import sentencepiece as spm
import torch
import torch.nn.functional as F

from megalodoc.ingest.pipeline import IngestError
from megalodoc.ingest.sources import IngestCaps, SourceError, SourceOptions, open_source
from megalodoc.ingest.token_stream import TokenizedPiece, tokenize_source
from megalodoc.model import Megalodon, ModelBundle, load_bundle
from megalodoc.model.bundle import IN_MEMORY
from megalodoc.model.tokenizer import Tokenizer

# Bucket edges in tokens: the first chunk of a short-context model, then x4 per bucket up to 32K.
BUCKET_EDGES: tuple[int, ...] = (0, 128, 512, 2048, 8192, 32768)
BUCKET_LABELS: tuple[str, ...] = ("0-128", "128-512", "512-2K", "2K-8K", "8K-32K", "32K+")
# Logits of one model call are B*L*V fp32 values; calls hold at most this many bytes of logits (several
# chunks per call when C*V is small, one chunk otherwise).
LOGITS_BYTES_PER_CALL = 128 * 1024 * 1024
# ... and at most this many tokens, which bounds the activations of the (G, C) reset batch.
TOKENS_PER_CALL = 16384

ProgressFn = Callable[[str, int, int | None], None]  # (document name, tokens done, total: known at the end)


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
        """Totals per position bucket (always len(BUCKET_LABELS) of them, empty ones included)."""
        return _totals_by_index(self, bucket_index(self.positions), len(BUCKET_LABELS))

    def chunk_offsets(self, chunk_size: int) -> list[LossTotals]:
        """Totals per in-chunk offset bucket (always len(chunk_offset_edges(chunk_size)) of them)."""
        edges = torch.tensor(chunk_offset_edges(chunk_size)[1:], dtype=torch.int64)
        index = torch.bucketize(self.positions % chunk_size, edges, right=True)  # (T,)
        return _totals_by_index(self, index, len(edges) + 1)


def chunk_offset_edges(chunk_size: int) -> tuple[int, ...]:
    """Start offsets of the in-chunk offset buckets: 1, 2, 4, ... below `chunk_size` (offset 0 is never
    scored); bucket i holds edges[i] <= offset < edges[i+1], the last one up to chunk_size - 1."""
    edges, start = [], 1
    while start < chunk_size:
        edges.append(start)
        start *= 2
    return tuple(edges)


def chunk_offset_labels(chunk_size: int) -> tuple[str, ...]:
    """"1", "2-3", "4-7", ... for `chunk_offset_edges(chunk_size)`."""
    edges = chunk_offset_edges(chunk_size)
    ends = [e - 1 for e in (*edges[1:], chunk_size)]
    return tuple(str(a) if a == b else f"{a}-{b}" for a, b in zip(edges, ends, strict=True))


def _totals_by_index(losses: TokenLosses, index: torch.Tensor, n: int) -> list[LossTotals]:
    """Totals of the scored tokens grouped by `index` (T,) in 0..n-1 (always n of them)."""
    tokens = torch.bincount(index, minlength=n)
    nbytes = torch.bincount(index, weights=losses.nbytes.double(), minlength=n)
    carried = torch.bincount(index, weights=losses.carried, minlength=n)
    reset = torch.bincount(index, weights=losses.reset, minlength=n)
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


class _Scorer:
    """Scores a document's tokens in both modes, whole chunks at a time, carrying the state between calls."""

    def __init__(self, model: Megalodon, byte_lengths: torch.Tensor) -> None:
        self.model, self.byte_lengths = model, byte_lengths
        self.C, self.V = model.config.chunk_size, model.config.vocab_size
        self.device = model.embed.weight.device
        self.state = None  # the carried state after `position` tokens
        self.position = 0

    @torch.no_grad()
    def score(self, ids: list[int]) -> TokenLosses:
        """Tokens `position`..`position+len(ids)`: whole chunks (any number), or the document's last, partial
        one. Carried: one (1, g*C) call continuing the state (exact: attention is chunk-local and streaming is
        exact across calls). Reset: the same chunks as a (g, C) batch from a fresh state."""
        C, V, n = self.C, self.V, len(ids)
        tokens = torch.tensor(ids, dtype=torch.int64)  # (n,)
        g, width = (n // C, C) if n % C == 0 else (1, n)
        batch = tokens.to(self.device).view(g, width)  # (g, w)
        logits, self.state = self.model(batch.view(1, n), self.state)  # (1, n, V)
        carried = _chunk_losses(logits.view(g, width, V), batch).reshape(-1).cpu()  # (g*(w-1),)
        del logits
        logits, _ = self.model(batch, None)  # (g, w, V)
        reset = _chunk_losses(logits, batch).reshape(-1).cpu()  # (g*(w-1),)
        del logits
        positions = torch.arange(self.position, self.position + n, dtype=torch.int64)
        keep = positions % C != 0  # the first token of every chunk is not scored
        self.position += n
        return TokenLosses(positions[keep], self.byte_lengths[tokens[keep]], carried.double(), reset.double())


def _score_stream(model: Megalodon, batches: Iterable[Sequence[int]], byte_lengths: torch.Tensor,
                  chunks_per_call: int | None, on_chunks: Callable[[int], None] | None) -> Iterator[TokenLosses]:
    """TokenLosses of consecutive groups of whole chunks of the token stream `batches` (any split), then of
    the last partial chunk. Holds at most one group of tokens."""
    C, V = model.config.chunk_size, model.config.vocab_size
    G = chunks_per_call or max(1, min(LOGITS_BYTES_PER_CALL // (C * V * 4), TOKENS_PER_CALL // C))
    scorer = _Scorer(model, byte_lengths)
    buffer: list[int] = []
    for batch in batches:
        buffer.extend(batch)
        while len(buffer) >= G * C:
            yield scorer.score(buffer[: G * C])
            del buffer[: G * C]
            if on_chunks is not None:
                on_chunks(scorer.position)
    full = len(buffer) // C * C
    if full:
        yield scorer.score(buffer[:full])
    if len(buffer) - full > 1:  # the last, partial chunk; a single token there has nothing to score
        yield scorer.score(buffer[full:])
    if on_chunks is not None and buffer:
        on_chunks(scorer.position + (len(buffer) - full == 1))


def document_losses(model: Megalodon, ids: Sequence[int] | torch.Tensor, byte_lengths: torch.Tensor, *,
                    chunks_per_call: int | None = None, on_chunks: Callable[[int], None] | None = None) -> TokenLosses:
    """Per-token nats of `ids` (one whole document) in both modes. G whole chunks per model call
    (`chunks_per_call`, default: as many as LOGITS_BYTES_PER_CALL and TOKENS_PER_CALL allow): the carried
    mode feeds them as one call continuing the state, the reset mode as one batch from a fresh state.
    `on_chunks(tokens_done)` is called after each group."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    parts = list(_score_stream(model, [ids], byte_lengths, chunks_per_call, on_chunks))
    if not parts:
        empty_i, empty_f = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64)
        return TokenLosses(empty_i, empty_i, empty_f, empty_f)
    fields = ("positions", "nbytes", "carried", "reset")
    return TokenLosses(*(torch.cat([getattr(part, f) for part in parts]) for f in fields))


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
    chunk_offsets: tuple[LossTotals, ...]  # by offset inside the chunk, buckets of chunk_offset_edges(C)
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
    def chunk_offsets(self) -> tuple[LossTotals, ...]:
        pooled = [LossTotals()] * len(chunk_offset_edges(self.chunk_size))
        for d in self.documents:
            pooled = [a + b for a, b in zip(pooled, d.chunk_offsets, strict=True)]
        return tuple(pooled)

    @property
    def bits_per_byte_carried(self) -> float | None:
        return self.totals.bits_per_byte_carried

    @property
    def bits_per_byte_reset(self) -> float | None:
        return self.totals.bits_per_byte_reset

    def to_dict(self) -> dict[str, object]:
        """The JSON document: pooled numbers at the top level (by position in the document and by offset
        inside the chunk), then per document."""
        edges = chunk_offset_edges(self.chunk_size)
        offsets = [{"offsets": label, "start": start, "end": end, **b.to_dict()} for label, start, end, b in
                   zip(chunk_offset_labels(self.chunk_size), edges, (*edges[1:], self.chunk_size),
                       self.chunk_offsets, strict=True)]
        return {"model": self.model, "chunk_size": self.chunk_size, "max_tokens": self.max_tokens,
                **self.totals.to_dict(), "buckets": _bucket_dicts(self.buckets), "chunk_offsets": offsets,
                "documents": [d.to_dict() for d in self.documents],
                "errors": [{"path": p, "message": m} for p, m in self.errors]}


def _bucket_dicts(buckets: Iterable[LossTotals]) -> list[dict[str, object]]:
    ends = (*BUCKET_EDGES[1:], None)
    return [{"bucket": label, "start": start, "end": end, **b.to_dict()}
            for label, start, end, b in zip(BUCKET_LABELS, BUCKET_EDGES, ends, buckets, strict=True)]


@dataclass
class _ReadCount:
    tokens: int = 0
    truncated: bool = False


def _capped_ids(pieces: Iterator[TokenizedPiece], max_tokens: int | None, count: _ReadCount) -> Iterator[list[int]]:
    """The pieces' ids, at most `max_tokens` in all; `count` records how many and whether some were left."""
    for piece in pieces:
        ids = piece.ids
        if max_tokens is not None and count.tokens + len(ids) >= max_tokens:
            ids = ids[: max_tokens - count.tokens]
            count.truncated = count.tokens + len(piece.ids) > max_tokens or next(pieces, None) is not None
            count.tokens += len(ids)
            yield ids
            return
        count.tokens += len(ids)
        yield ids


def evaluate_document(bundle: ModelBundle, path: str | os.PathLike, byte_lengths: torch.Tensor, *,
                      max_tokens: int | None = None, chunks_per_call: int | None = None,
                      on_progress: ProgressFn | None = None, caps: IngestCaps | None = None) -> DocumentEvaluation:
    """Evaluate one path with a loaded model bundle (model + tokenizer), read and tokenized as ingest reads it
    (streamed: memory holds one group of chunks, not the document), under `caps` (None: `evaluation_caps()`).
    Raises EvaluationError naming the file."""
    started = time.perf_counter()
    C = bundle.chunk_size
    totals, buckets = LossTotals(), [LossTotals()] * len(BUCKET_LABELS)
    offsets = [LossTotals()] * len(chunk_offset_edges(C))
    count = _ReadCount()
    try:
        with open_source(Path(path), SourceOptions(caps=evaluation_caps() if caps is None else caps)) as source:
            name, kind = source.name, source.kind
            report = None if on_progress is None else (lambda done: on_progress(name, done, None))
            stream = tokenize_source(source, bundle.require_tokenizer())
            try:
                batches = _capped_ids(stream, max_tokens, count)
                for losses in _score_stream(bundle.model, batches, byte_lengths, chunks_per_call, report):
                    totals = totals + losses.totals()
                    buckets = [a + b for a, b in zip(buckets, losses.buckets(), strict=True)]
                    offsets = [a + b for a, b in zip(offsets, losses.chunk_offsets(C), strict=True)]
            finally:
                stream.close()
            notes = tuple(str(n) for n in (*source.warnings, *source.skipped))
    except SourceError as exc:
        raise EvaluationError(str(exc)) from exc
    if count.tokens == 0:
        raise EvaluationError(f"{path}: no text to evaluate (the reader found no tokens)")
    if on_progress is not None:
        on_progress(name, count.tokens, count.tokens)
    return DocumentEvaluation(str(path), name, kind, count.tokens, count.truncated, totals, tuple(buckets),
                              tuple(offsets), time.perf_counter() - started, notes)


def evaluation_caps() -> IngestCaps:
    """Ingest's default caps on one input without the token cap: `max_tokens` evaluates a document's first
    tokens instead of refusing a longer one."""
    return replace(IngestCaps(), max_tokens=None)


def evaluate_paths(paths: Iterable[str | os.PathLike],
                   model: ModelBundle | str | os.PathLike | Megalodon | None = None, *,
                   max_tokens: int | None = None, device: str | torch.device | None = None,
                   chunks_per_call: int | None = None, on_progress: ProgressFn | None = None,
                   caps: IngestCaps | None = None) -> EvaluationReport:
    """Evaluate every path with `model` (a bundle, a folder, a Hub id, or None for the default model)
    and the tokenizer shipped with it, reading each under `caps` (None: `evaluation_caps()`). A path that
    cannot be read, or is over a cap, is recorded in `errors` (its message names the file) and the others
    are still evaluated. A model without a tokenizer raises IngestError;
    an unusable model folder raises CheckpointError."""
    if max_tokens is not None and max_tokens < 2:
        raise ValueError(f"max_tokens={max_tokens} must be at least 2 (one token predicts the next)")
    if chunks_per_call is not None and chunks_per_call < 1:
        raise ValueError(f"chunks_per_call={chunks_per_call} must be >= 1")
    if isinstance(model, ModelBundle):
        if device is not None and torch.device(device) != model.device:
            raise ValueError(f"device={device} differs from the bundle's device {model.device}; load the bundle "
                             "on the device to evaluate on")
        bundle = model
    else:
        bundle = load_bundle(model, device=device or "cpu")
    if bundle.tokenizer is None:
        raise IngestError(f"{bundle.source}: the model has no tokenizer.model; evaluation needs the model's own "
                          "tokenizer")
    byte_lengths = token_byte_lengths(bundle.tokenizer)
    documents, errors = [], []
    for path in paths:
        try:
            documents.append(evaluate_document(bundle, path, byte_lengths, max_tokens=max_tokens,
                                               chunks_per_call=chunks_per_call, on_progress=on_progress,
                                               caps=caps))
        except EvaluationError as exc:
            errors.append((str(path), str(exc)))
    info = {"path": None if bundle.source == IN_MEMORY else bundle.source, "fingerprint": bundle.fingerprint,
            "parameters": bundle.model.num_parameters(), "config": bundle.model.config.to_dict()}
    return EvaluationReport(info, bundle.chunk_size, max_tokens, tuple(documents), tuple(errors))
