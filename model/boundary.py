"""Chunk-boundary states plus tail ids: the form in which states are stored.

Attention is chunk-local, so at a chunk boundary (position a multiple of C) a state holds no keys or
values: only the CEMA hidden states and the norm statistics, a size that does not grow with the text.
In the middle of a chunk it also carries the unfinished chunk's keys and values, which for a large model
can be far bigger. Stored states are therefore always boundary states; the state at any other position p
is the boundary state at b = p - p % C plus the token ids [b, p) (the tail, fewer than C), re-read on
restore. Document snapshots and session turns use the same pair:

    boundary, tail = fold_to_boundary(model, boundary, new_ids)    # store (boundary, tail)
    state = restore_with_tail(model, boundary, tail)              # the state after the last id

Every model call here feeds pieces that end at absolute chunk boundaries, the way ingest reads a
document, so restoring gives bit for bit (on CPU) the state of an uninterrupted chunked run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from megalodoc.model.config import MegalodonConfig
from megalodoc.model.megalodon import Megalodon
from megalodoc.model.state import ModelState

TokenIds = Sequence[int] | torch.Tensor  # 1-D token ids of one sequence (batch 1)


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
    pieces that end at absolute chunk boundaries: bit-identical on CPU to ingest's chunk-by-chunk reading."""
    state = _start(model, state)
    tokens = _as_list(ids)
    C = model.config.chunk_size
    device = model.embed.weight.device
    done = 0
    with torch.no_grad():
        while done < len(tokens):
            take = min(C - state.position % C, len(tokens) - done)
            piece = torch.tensor([tokens[done : done + take]], dtype=torch.int64, device=device)  # (1, take)
            _, state = model(piece, state, compute_logits=False)
            done += take
    return state


def fold_to_boundary(
    model: Megalodon, boundary_state: ModelState | None, ids: TokenIds
) -> tuple[ModelState, list[int]]:
    """Read `ids` after `boundary_state` (None: the start of a text) and return (the state at the last
    chunk boundary reached, the ids after that boundary). The returned ids are fewer than C; when no
    boundary is crossed the state comes back unchanged with all of `ids` as the tail. The input state
    must itself be at a boundary (ValueError otherwise: a mid-chunk state cannot be stored)."""
    state = _start(model, boundary_state)
    if not state.at_chunk_boundary:
        raise ValueError(
            f"fold_to_boundary needs a chunk-boundary state; got one at position {state.position}, "
            f"{state.position % model.config.chunk_size} tokens into a chunk"
        )
    tokens = _as_list(ids)
    C = model.config.chunk_size
    whole = (state.position + len(tokens)) // C * C - state.position  # tokens up to the last boundary
    if whole > 0:
        state = run_aligned(model, state, tokens[:whole])
    return state, tokens[whole:]


def restore_with_tail(model: Megalodon, boundary_state: ModelState | None, tail_ids: TokenIds) -> ModelState:
    """The state after `tail_ids` read from a stored boundary state: what a stored (state, tail) pair means."""
    return run_aligned(model, boundary_state, tail_ids)
