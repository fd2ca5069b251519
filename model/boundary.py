"""Call-boundary states plus tail ids: the form in which states are stored, and the grid of model calls.

Attention is chunk-local, so at a chunk boundary (position a multiple of C) a state holds no keys or
values: only the CEMA hidden states and the norm statistics, a size that does not grow with the text.
In the middle of a chunk it also carries the unfinished chunk's keys and values, which for a large model
can be far bigger. Stored states are therefore always boundary states.

The model reads text in calls of up to CALL_CHUNKS chunks that end at absolute multiples of
`call_span(config)` = CALL_CHUNKS * C tokens (the call boundaries): a call of several chunks does the
same work in larger matrix products, several times faster per token on a CPU than one chunk per call.
The bits of a state depend on how the text was cut into calls, so every path cuts on the same absolute
grid: ingest, a restore, a session turn. The state at any position p is stored as the state at the last
call boundary b <= p plus the token ids [b, p) (the tail, fewer than CALL_CHUNKS * C), re-read on
restore. Document snapshots and session turns use the same pair:

    boundary, tail = fold_to_boundary(model, boundary, new_ids)    # store (boundary, tail)
    state = restore_with_tail(model, boundary, tail)              # the state after the last id

Restoring therefore gives bit for bit the state of an uninterrupted reading. A state stored at a chunk
boundary that is not a call boundary (made before calls spanned several chunks) is still read: the
first call runs to the next call boundary, and the continuation is within rounding of, not bit-identical
with, an uninterrupted reading.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from megalodoc.model.config import MegalodonConfig
from megalodoc.model.megalodon import Megalodon
from megalodoc.model.state import ModelState

TokenIds = Sequence[int] | torch.Tensor  # 1-D token ids of one sequence (batch 1)

CALL_CHUNKS = 4
"""Chunks per model call when reading a text (ingest, restores, session folds): calls end at multiples
of CALL_CHUNKS * C. 4 gets most of the speed of larger calls (see bench/roofline_cpu.py) while keeping
the tail that a restore re-reads short."""


def call_span(config: MegalodonConfig) -> int:
    """Tokens between two call boundaries: CALL_CHUNKS * C."""
    return CALL_CHUNKS * config.chunk_size


def boundary_state_nbytes(config: MegalodonConfig, batch_size: int = 1) -> int:
    """Bytes of the tensors of an fp32 model's boundary state (`ModelState.nbytes()` at a boundary):
    per layer the CEMA state (B, D, N) complex64 and the norm statistics (count int64 (B,), mean and var
    fp32 (B, G)); the final norm's statistics; the position (int64)."""
    B = batch_size
    norm = B * 8 + 2 * B * config.norm_num_groups * 4
    layer = B * config.model_dim * config.cema_ndim * 8 + norm
    return config.num_layers * layer + norm + 8


def _as_list(ids: TokenIds) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"token ids must be 1-D (one sequence), got shape {tuple(ids.shape)}")
        return [int(i) for i in ids.tolist()]
    return [int(i) for i in ids]


def _start(model: Megalodon, state: ModelState | None) -> ModelState:
    if state is None:
        return model.initial_state(1)
    if state.batch_size != 1:
        raise ValueError(f"stored states have batch size 1, got a state of batch size {state.batch_size}")
    return state


def run_aligned(model: Megalodon, state: ModelState | None, ids: TokenIds) -> ModelState:
    """The state after reading `ids` from `state` (None: a fresh state), without the LM head, fed in
    calls that end at absolute call boundaries (multiples of `call_span`): from a state at a call
    boundary, bit-identical to ingest's reading of the same text. From a state inside a call the first
    call is shorter than an uninterrupted reading's, which it then matches to float rounding only; to
    continue exactly, keep the boundary state and the ids after it (`fold_to_boundary`)."""
    state = _start(model, state)
    tokens = _as_list(ids)
    span = call_span(model.config)
    device = model.embed.weight.device
    done = 0
    with torch.no_grad():
        while done < len(tokens):
            take = min(span - state.position % span, len(tokens) - done)
            piece = torch.tensor([tokens[done : done + take]], dtype=torch.int64, device=device)  # (1, take)
            _, state = model(piece, state, compute_logits=False)
            done += take
    return state


def fold_to_boundary(
    model: Megalodon, boundary_state: ModelState | None, ids: TokenIds
) -> tuple[ModelState, list[int]]:
    """Read `ids` after `boundary_state` (None: the start of a text) and return (the state at the last
    call boundary reached, the ids after that boundary). The returned ids are fewer than `call_span`;
    when no call boundary is crossed the state comes back unchanged with all of `ids` as the tail. The
    input state must be at a chunk boundary (ValueError otherwise: a mid-chunk state cannot be stored);
    a chunk boundary that is not a call boundary is accepted (a state stored by an older release)."""
    state = _start(model, boundary_state)
    if not state.at_chunk_boundary:
        raise ValueError(
            f"fold_to_boundary needs a chunk-boundary state; got one at position {state.position}, "
            f"{state.position % model.config.chunk_size} tokens into a chunk"
        )
    tokens = _as_list(ids)
    span = call_span(model.config)
    whole = max(0, (state.position + len(tokens)) // span * span - state.position)  # up to the last call boundary
    if whole > 0:
        state = run_aligned(model, state, tokens[:whole])
    return state, tokens[whole:]


def restore_with_tail(model: Megalodon, boundary_state: ModelState | None, tail_ids: TokenIds) -> ModelState:
    """The state after `tail_ids` read from a stored boundary state: what a stored (state, tail) pair means."""
    return run_aligned(model, boundary_state, tail_ids)
