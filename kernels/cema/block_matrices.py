"""The per-channel matrices of blocked CEMA (kernels/cema/blocked.py), built from powers of q.

For blocks of T steps, with D channels and N complex states, complex columns and rows stored as
interleaved (re, im) pairs so that complex tensors are read and written as real views:
    out (D, T + 2N, T): rows s < T: Toeplitz taps k[t - s] (t >= s, else 0), k[j] = Re sum_n p gamma q^j;
        then for each n the pair Re(gamma q^(t+1)), -Im(gamma q^(t+1)), which turns a state's (re, im)
        pair into Re(gamma q^(t+1) E);
    sums (D, T, 2N): (re, im) of p q^(T-1-s), the weights of a block's inputs in its end state;
    step (D, N): q^T;
    powers (D, N, T+1): q^j, j = 0..T (what the hand-written backward differentiates through).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch.utils.weak import WeakTensorKeyDictionary

# Cached block sizes per q, when no input needs a gradient (streaming uses the chunk size's block and
# the tail's).
_CACHED_BLOCKS = 6


@dataclass(frozen=True)
class BlockMatrices:
    out: torch.Tensor
    sums: torch.Tensor
    step: torch.Tensor
    powers: torch.Tensor


def block_matrices(p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, T: int) -> BlockMatrices:
    """The matrices for blocks of T steps, from powers of q multiplied out in complex128 (T <= 64 products
    keep ~1e-14 relative error) and rounded once. p (D, N) real; q, gamma (D, N) complex."""
    cdtype = q.dtype
    q_wide = q.to(torch.complex128)
    powers = torch.cumprod(torch.cat((torch.ones_like(q_wide)[..., None], q_wide[..., None].expand(*q.shape, T)),
                                     dim=-1), dim=-1).to(cdtype)  # (D, N, T+1): q^j, j = 0..T
    taps = ((p * gamma)[..., None] * powers[..., :T]).real.sum(1)  # (D, T): k[j]
    # (D, T, T): [s, t] = k[t-s], 0 for t < s. Windows of the left-padded taps hold k[t - (T-1-j)] at [j, t];
    # reversing the window order gives k[t - s] at [s, t]
    toeplitz = torch.nn.functional.pad(taps, (T - 1, 0)).unfold(-1, T, 1).flip(-2)
    D, N = q.shape
    readout = gamma[..., None] * powers[..., 1:]  # (D, N, T): gamma q^(t+1)
    readout = torch.stack((readout.real, -readout.imag), dim=2).reshape(D, 2 * N, T)  # rows (re, -im) per n
    out = torch.cat((toeplitz, readout), dim=1)  # (D, T+2N, T)
    weights = p[..., None] * powers[..., :T].flip(-1)  # (D, N, T): p q^(T-1-s)
    sums = torch.view_as_real(weights).permute(0, 2, 1, 3).reshape(D, T, 2 * N)  # columns (re, im) per n
    return BlockMatrices(out.contiguous(), sums.contiguous(), powers[..., T].contiguous(), powers)


# q -> {T: (p, gamma, versions of q, p, gamma, matrices)}: reused while q lives and is unchanged.
# p and gamma are held (not their ids), so a new tensor at a recycled id can never match.
_CACHE: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
_CACHE_LOCK = threading.Lock()


def cached_block_matrices(p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, T: int) -> BlockMatrices:
    """block_matrices, kept per (q, T) while q lives and none of p, q, gamma changes. Only for
    coefficients that need no gradient (the cache would keep a graph alive otherwise). Inference tensors
    (made under torch.inference_mode) carry no version counter, so matrices for them are built afresh."""
    if p.is_inference() or q.is_inference() or gamma.is_inference():
        return block_matrices(p, q, gamma, T)
    versions = (q._version, p._version, gamma._version)
    with _CACHE_LOCK:
        per_q = _CACHE.get(q)
        hit = None if per_q is None else per_q.get(T)
    if hit is not None and hit[0] is p and hit[1] is gamma and hit[2] == versions:
        return hit[3]
    built = block_matrices(p, q, gamma, T)  # outside the lock: other threads' hits do not wait for it
    with _CACHE_LOCK:  # threads sharing one model evict and insert one at a time
        per_q = _CACHE.get(q)
        if per_q is None:
            per_q = _CACHE[q] = {}
        if len(per_q) >= _CACHED_BLOCKS and T not in per_q:
            per_q.pop(next(iter(per_q)))
        per_q[T] = (p, gamma, versions, built)
    return built
