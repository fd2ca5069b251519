"""CEMA in blocks of T steps: batched matrix products inside each block, the recurrence between blocks.

This is the CPU backend and the twin of the Triton kernel. With h the complex state (spec section 2.3),
    h_t = q h_{t-1} + p x_t,   y_t = Re(sum_n gamma_n h_t,n) + omega x_t,
cut the time axis into blocks of T steps. Entering block a with state E_a, for t < T:
    y[aT + t] = sum_{s<=t} k[t-s] x[aT + s]  +  Re sum_n gamma q^(t+1) E_a        k[j] = Re sum_n p gamma q^j
    E_(a+1)   = q^T E_a + p sum_s q^(T-1-s) x[aT + s]
so a block's output is one batched product of [x of the block | Re E_a | -Im E_a] with a (T + 2N, T)
matrix per channel (Toeplitz taps stacked on the state read-out), the block sums are one product with a
(T, 2N) matrix, and only the A = L/T state updates E_a -> E_(a+1) run one after another. Every matrix
depends on the coefficients and T only (kernels/cema/block_matrices.py): when no input needs a gradient
they are kept per (q, T) and reused while q lives and is unchanged; with gradients,
kernels/cema/blocks_autograd.py differentiates through them by a hand-written backward. Inputs of at most
4 tokens run the recurrence itself; a single token (decoding) runs one step of it on (B, D) views, the
same arithmetic without the transposed copies and the stacking (this function's call at D=256, N=16,
1 thread: ~111 -> ~78 us).
All arithmetic is fp32/complex64 (float64/complex128 when x is float64, for gradient checks), under
autocast too (it is switched off inside, kernels/autocast_off.py); the result is cast back to x's dtype.
"""

from __future__ import annotations

import torch

from ..autocast_off import without_autocast
from .block_matrices import cached_block_matrices
from .blocks_autograd import BlocksFunction, run_blocks

# Up to this length the recurrence itself is cheaper than any block product (decoding is L = 1).
_RECURRENCE_MAX_LEN = 4
# Longest block: T ~ sqrt(L) balances the block products (cost ~ L*T) against the A = L/T sequential
# state updates; at T = 64 a 4,096-token input takes 64 updates.
_MAX_BLOCK = 64
# With gradients the per-block matrices are rebuilt and differentiated on every call, which favours
# smaller blocks: at 2,048 tokens (D=256, N=16, 1 thread) forward+backward took 30 ms with T = 64,
# 21 ms with T = 32 and 24 ms with T = 16.
_MAX_GRAD_BLOCK = 32


def _transposed(x: torch.Tensor) -> torch.Tensor:
    """(B, M, K) -> contiguous (B, K, M). Copied one batch row at a time: on the CPU a 2-D transposing copy
    runs ~3x faster than the same copy of a 3-D view (measured at (1, 2048, 256), fp32)."""
    B, M, K = x.shape
    if B == 1:
        return x[0].t().contiguous()[None]
    out = x.new_empty(B, K, M)
    for b in range(B):
        out[b] = x[b].t()
    return out


def _recurrence(
    x: torch.Tensor, p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence step by step, for a few tokens. x (B, D, L), h (B, D, N) -> y (B, D, L), h_out."""
    ys = []
    for t in range(x.shape[-1]):
        h = q * h + p * x[..., t, None]  # (B, D, N)
        ys.append((gamma * h).real.sum(-1))  # (B, D); Re(gamma h) summed over n
    return torch.stack(ys, dim=-1), h


def _blocks(
    x: torch.Tensor, p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, h: torch.Tensor, T: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole number of blocks. x (B, D, A*T), h (B, D, N) -> y (B, D, A*T) without the omega skip,
    and the state after the last block."""
    B, D, L = x.shape
    A = L // T
    blocks = x.reshape(B, D, A, T).transpose(0, 1).reshape(D, B * A, T)  # (D, B*A, T); a view when B == 1
    # contiguous: CPU bmm on strided operands copies batch by batch (~70x slower)
    blocks = blocks.contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, p, q, gamma, h)):
        y, e = BlocksFunction.apply(blocks, p, q, gamma, h, B)  # the hand-written backward
    else:
        y, e, _ = run_blocks(blocks, cached_block_matrices(p, q, gamma, T), h, B)
    return y.reshape(D, B, L).transpose(0, 1), e.transpose(0, 1)


def cema_one_step(
    x: torch.Tensor, p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, omega: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the recurrence, no autocast handling: x (B, D) real, p (D, N) and omega (D,) in x's
    dtype, q and gamma (D, N) and h (B, D, N) in the matching complex dtype -> y (B, D), h (B, D, N)."""
    h = torch.addcmul(q * h, p, x.unsqueeze(-1))  # q h + p x  (B, D, N)
    return torch.addcmul((gamma * h).real.sum(-1), x, omega), h  # Re(sum_n gamma h) + omega x  (B, D)


@without_autocast
def cema_blocked(
    x: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    gamma: torch.Tensor,
    omega: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """CEMA forward with autograd. x (B, L, D); p (D, N) real; q, gamma (D, N) complex; omega (D,);
    initial_state (B, D, N) complex or None. Returns y (B, L, D) in x's dtype and, if asked, the final
    state (B, D, N) complex64 (complex128 for float64 input)."""
    B, L, D = x.shape
    N = p.shape[-1]
    wide = x.dtype == torch.float64
    rdtype = torch.float64 if wide else torch.float32
    cdtype = torch.complex128 if wide else torch.complex64
    p, q, gamma = p.to(rdtype), q.to(cdtype), gamma.to(cdtype)
    if initial_state is not None:
        h = initial_state.to(cdtype)
    else:
        h = torch.zeros(B, D, N, dtype=cdtype, device=x.device)
    xr = x.to(rdtype)  # (B, L, D)
    if L == 0:
        return x.new_zeros(B, 0, D), (h if output_final_state else None)
    if L == 1:  # decoding: one step of the recurrence on (B, D) views, no transposed copies
        y, h = cema_one_step(xr.reshape(B, D), p, q, gamma, omega.to(rdtype), h)  # (B, D), (B, D, N)
        return y.view(B, 1, D).to(x.dtype), (h if output_final_state else None)
    xt = _transposed(xr)  # (B, D, L)
    if L <= _RECURRENCE_MAX_LEN:
        y, h = _recurrence(xt, p, q, gamma, h)
    else:
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, p, q, gamma, h))
        T = min(_MAX_GRAD_BLOCK if grad else _MAX_BLOCK, 1 << max(3, (L.bit_length() + 1) // 2))  # ~sqrt(L)
        whole = L - L % T
        pieces = []
        if whole:
            y, h = _blocks(xt[..., :whole], p, q, gamma, h, T)
            pieces.append(y)
        tail = L - whole
        if tail:  # one shorter block (or the recurrence for a few tokens)
            if tail <= _RECURRENCE_MAX_LEN:
                y, h = _recurrence(xt[..., whole:], p, q, gamma, h)
            else:
                y, h = _blocks(xt[..., whole:], p, q, gamma, h, tail)
            pieces.append(y)
        y = torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]
    y = torch.addcmul(_transposed(y), xr, omega.to(rdtype))  # (B, L, D): + omega x
    return y.to(x.dtype), (h if output_final_state else None)
