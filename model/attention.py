"""Attention strictly inside each chunk of C tokens, with the unfinished chunk's keys/values carried.

A call sees n cached tokens of the current chunk (n = position mod C) and L new ones. The new tokens that
finish the current chunk attend to the cache plus themselves (bottom-right-aligned causal mask); the rest
start at a chunk boundary and are cut into chunks of C (the last one may be partial), each with plain
causal attention. Softmax scale is 1.0: the learnt q/k scale replaces the temperature (paper Eq. 9).
Positions restart at 0 in every chunk; cached keys are stored already rotated.

Under no_grad the unfinished chunk's keys and values live in a buffer of C tokens (C is fixed), and the
state holds views of its first n tokens: appending a token writes it after them instead of concatenating
a new copy of the cache per generated token, and the new tokens attend to that view (a single new token
needs no mask). A single new token without gradients (decoding) takes a shorter path: its rotation by
a Python position and model/attention_one_query.py. A state is never mutated: the buffer remembers how
many tokens have been claimed, and a second continuation of the same state (a branch) gets a copy. The
claim is atomic (checked and taken under one lock), so this holds when several threads continue the same
state with one shared model; the write itself happens outside the lock, into the claimed slots only.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakTensorKeyDictionary

from megalodoc.model.attention_autograd import AttentionFunction, attention_forward
from megalodoc.model.attention_one_query import one_query_attention
from megalodoc.model.rotary import Rotary

# chunk buffer -> number of its tokens some state already holds (writes go after them only)
_CLAIMED: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
# guards _CLAIMED: without it two threads continuing one state could both see slot n free and both write it
_CLAIM_LOCK = threading.Lock()


def _claim(buffer: torch.Tensor, n: int, L: int) -> bool:
    """Takes tokens n..n+L of `buffer` if exactly its first n are claimed so far; False if another
    continuation has taken them already (or the buffer is not a chunk buffer)."""
    with _CLAIM_LOCK:
        if _CLAIMED.get(buffer) != n:
            return False
        _CLAIMED[buffer] = n + L
        return True


def _append(cached: torch.Tensor, new: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """cached (B, n, H, d) followed by new (B, L, H, d), n + L < C, as a view of a chunk buffer."""
    n, L = cached.shape[1], new.shape[1]
    if torch.is_grad_enabled() and (cached.requires_grad or new.requires_grad):
        return torch.cat((cached, new), dim=1)  # autograd needs values that are never written again
    buffer = cached._base  # a chunk buffer, or (a restored state's keys) whatever the bytes decoded into
    reusable = (
        buffer is not None and buffer.dim() == new.dim() and buffer.shape[1] == chunk_size
        and buffer.dtype == new.dtype and buffer.device == new.device and buffer.shape[0] == new.shape[0]
        and cached.data_ptr() == buffer.data_ptr() and buffer.is_contiguous()
        and _claim(buffer, n, L)  # last: a claim taken is a claim used
    )
    if not reusable:
        # a normal tensor even under inference_mode: a view of an inference tensor has no _base, so the
        # next append would not find its buffer again and would copy the chunk's n tokens every time
        with torch.inference_mode(False), torch.no_grad():
            buffer = new.new_empty(new.shape[0], chunk_size, *new.shape[2:])  # (B, C, H, d)
        with _CLAIM_LOCK:  # no other thread knows this buffer yet; the lock guards the table itself
            _CLAIMED[buffer] = n + L
        buffer[:, :n] = cached
    buffer[:, n : n + L] = new
    return buffer[:, : n + L]


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool,
          dropout: float) -> torch.Tensor:
    """(B, Lq, H, d), (B, Lk, H, d), (B, Lk, H, dv) -> (B, Lq, H, dv); mask (Lq, Lk) True where allowed,
    causal: the top-left-aligned causal mask instead."""
    if dropout == 0.0 and (q.device.type == "cpu" or not torch.is_grad_enabled()):
        return _plain_attention(q, k, v, mask, causal)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
        attn_mask=mask, dropout_p=dropout, is_causal=causal, scale=1.0,
    )
    return out.transpose(1, 2)


# Largest (batch, heads, Lq, Lk) score block of the plain path, in elements: longer inputs are processed in
# groups of chunks so that a one-shot call over many chunks does not hold all their scores at once.
_PLAIN_SCORE_ELEMENTS = 1 << 26
# (Lq, Lk, device) -> the causal mask's blocked positions, built once per shape
_CAUSAL_BLOCKED: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def _plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                     causal: bool) -> torch.Tensor:
    """softmax(q k^T + mask) v written out as two matrix products, as _sdpa without dropout. The value
    width differs from the query width (d_v = 4 d_z, 2048 in the 200M model), for which
    scaled_dot_product_attention has no fused CPU kernel (it falls back to a general path that rebuilds
    and checks the mask) and on CUDA only a memory-efficient kernel that measured ~8x slower than the two
    products on an H200 (mega200M, one chunk of 2048). Used without gradients on CUDA (training keeps
    the memory-efficient kernel, which stores no scores) and always on the CPU."""
    B, Lq, H, _ = q.shape
    Lk = k.shape[1]
    blocked = None  # (Lq, Lk) True where attention is not allowed
    if causal:
        key = (Lq, Lk, q.device)
        blocked = _CAUSAL_BLOCKED.get(key)
        if blocked is None:  # top-left aligned; a handful of shapes occur (chunk, tail), so they are kept
            blocked = _CAUSAL_BLOCKED[key] = ~torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).tril()
    elif mask is not None:
        blocked = ~mask
    group = max(1, _PLAIN_SCORE_ELEMENTS // max(1, H * Lq * Lk))
    if B > group:
        allowed = None if blocked is None else ~blocked
        return torch.cat([_plain_attention(q[i : i + group], k[i : i + group], v[i : i + group], allowed, False)
                          for i in range(0, B, group)])
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return AttentionFunction.apply(q, k, v, blocked)  # the backward written out, head by head
    return attention_forward(q, k, v, blocked)[0]  # head by head on strided views: no transposed copies


def _one_new_token(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cached_keys: torch.Tensor, cached_values: torch.Tensor,
    C: int, rotary: Rotary,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """chunked_attention for L = 1 without gradients (decoding): the token sits at position n of its chunk
    and attends to the n cached keys and itself. Same inputs and outputs."""
    n = cached_keys.shape[1]
    return attend_one_token(rotary(q, n, C), rotary(k, n, C), v, cached_keys, cached_values, C)


def attend_one_token(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cached_keys: torch.Tensor, cached_values: torch.Tensor,
    C: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """_one_new_token with q and k (B, 1, H, d_z) already rotated to the token's position n in its chunk
    (n = cached_keys.shape[1]): o (B, 1, H, d_v) and the cache carried after the token."""
    n = cached_keys.shape[1]
    if n + 1 < C:  # the chunk stays unfinished: the keys attended are the cache returned
        keys, values = _append(cached_keys, k, C), _append(cached_values, v, C)  # (B, n+1, H, d)
    else:
        keys, values = torch.cat((cached_keys, k), dim=1), torch.cat((cached_values, v), dim=1)
    o = one_query_attention(q, keys, values)  # (B, 1, H, d_v)
    if n + 1 == C:  # the token finished its chunk: nothing is carried
        return o, k[:, :0], v[:, :0]
    return o, keys, values


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cached_keys: torch.Tensor,
    cached_values: torch.Tensor,
    *,
    chunk_size: int,
    rotary: Rotary,
    dropout: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (B, L, H, d_z) unrotated; v (B, L, H, d_v); cached_keys (B, n, H, d_z) rotated;
    cached_values (B, n, H, d_v). Returns o (B, L, H, d_v) and the new cache (keys, values) holding the
    tokens of the chunk that is still unfinished after this call."""
    B, L, H, _ = q.shape
    C = chunk_size
    n = cached_keys.shape[1]
    if L == 1 and dropout == 0.0 and not (
        torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, cached_keys, cached_values))
    ):
        return _one_new_token(q, k, v, cached_keys, cached_values, C, rotary)
    positions = (n + torch.arange(L, device=q.device)) % C  # (L,) position inside the chunk
    q, k = rotary(q, positions, C), rotary(k, positions, C)
    outputs = []
    head = min(L, C - n) if n > 0 else 0  # new tokens that finish the current chunk
    # every new token stays in the unfinished chunk (decoding): the keys attended are the cache returned
    stays = head > 0 and n + L < C
    if head:
        if stays:
            keys, values = _append(cached_keys, k, C), _append(cached_values, v, C)  # (B, n+L, H, d)
        else:
            keys = torch.cat((cached_keys, k[:, :head]), dim=1)  # (B, n+head, H, d_z)
            values = torch.cat((cached_values, v[:, :head]), dim=1)
        mask = None  # one new token sees every key
        if head > 1:
            rows = torch.arange(head, device=q.device)[:, None]
            cols = torch.arange(n + head, device=q.device)[None, :]
            mask = cols <= rows + n  # (head, n+head): bottom-right-aligned causal
        outputs.append(_sdpa(q[:, :head], keys, values, mask, False, dropout))
    rest = L - head
    if rest:
        num_chunks = -(-rest // C)
        span = C if num_chunks > 1 else rest
        pad = num_chunks * span - rest  # only the last chunk can be partial; its padding is never attended
        def fold(t: torch.Tensor) -> torch.Tensor:  # (B, rest, H, d) -> (B*num_chunks, span, H, d)
            t = F.pad(t[:, head:], (0, 0, 0, 0, 0, pad)) if pad else t[:, head:]
            return t.reshape(B * num_chunks, span, H, t.shape[-1])
        o = _sdpa(fold(q), fold(k), fold(v), None, True, dropout)  # (B*num_chunks, span, H, d_v)
        outputs.append(o.reshape(B, num_chunks * span, H, -1)[:, :rest])
    o = torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]
    # the unfinished chunk after this call: its last (n + L) mod C tokens
    keep = (n + L) % C
    if keep == 0:
        return o, k[:, :0], v[:, :0]
    if stays:  # still inside the chunk the cache started (keep == n + L)
        return o, keys, values
    return o, _append(k[:, :0], k[:, L - keep :], C), _append(v[:, :0], v[:, L - keep :], C)
