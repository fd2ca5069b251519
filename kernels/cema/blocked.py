"""CEMA in blocks of T steps: batched matrix products inside each block, the recurrence between blocks.

This is the CPU backend and the twin of the Triton kernel. With h the complex state (spec section 2.3),
    h_t = q h_{t-1} + p x_t,   y_t = Re(sum_n gamma_n h_t,n) + omega x_t,
cut the time axis into blocks of T steps. Entering block a with state E_a, for t < T:
    y[aT + t] = sum_{s<=t} k[t-s] x[aT + s]  +  Re sum_n gamma q^(t+1) E_a        k[j] = Re sum_n p gamma q^j
    E_(a+1)   = q^T E_a + p sum_s q^(T-1-s) x[aT + s]
so a block's output is one batched product of [x of the block | Re E_a | -Im E_a] with a (T + 2N, T)
matrix per channel (Toeplitz taps stacked on the state read-out), the block sums are one product with a
(T, 2N) matrix, and only the A = L/T state updates E_a -> E_(a+1) run one after another. Every matrix
depends on the coefficients and T only: under torch.no_grad they are kept per (q, T) and reused while q
lives and is unchanged. Inputs of at most 4 tokens (decoding) run the recurrence itself.
All arithmetic is fp32/complex64 (float64/complex128 when x is float64, for gradient checks); the result
is cast back to x's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.weak import WeakTensorKeyDictionary

# Up to this length the recurrence itself is cheaper than any block product (decoding is L = 1).
_RECURRENCE_MAX_LEN = 4
# Longest block: T ~ sqrt(L) balances the block products (cost ~ L*T) against the A = L/T sequential
# state updates; at T = 64 a 4,096-token input takes 64 updates.
_MAX_BLOCK = 64
# Cached block sizes per q under no_grad (streaming uses the chunk size's block and the tail's).
_CACHED_BLOCKS = 6


@dataclass(frozen=True)
class BlockMatrices:
    """Per-channel matrices for blocks of T steps. D channels, N complex states; complex columns and rows
    are stored as interleaved (re, im) pairs, so complex tensors are read and written as real views.
    out (D, T + 2N, T): rows s < T: Toeplitz taps k[t - s] (t >= s); then for each n the pair
        Re(gamma q^(t+1)), -Im(gamma q^(t+1)), which turns a state's (re, im) pairs into Re(gamma q^(t+1) E).
    sums (D, T, 2N): (re, im) of p q^(T-1-s), the weights of a block's inputs in its end state.
    step (D, N): q^T."""

    out: torch.Tensor
    sums: torch.Tensor
    step: torch.Tensor


def block_matrices(p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, T: int) -> BlockMatrices:
    """The matrices for blocks of T steps, from powers of q multiplied out in complex128 (T <= 64 products
    keep ~1e-14 relative error) and rounded once."""
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
    return BlockMatrices(out.contiguous(), sums.contiguous(), powers[..., T].contiguous())


# q -> {T: (p, gamma, versions of q, p, gamma, matrices)}: reused while q lives and is unchanged.
# p and gamma are held (not their ids), so a new tensor at a recycled id can never match.
_CACHE: WeakTensorKeyDictionary = WeakTensorKeyDictionary()


def _matrices(p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, T: int) -> BlockMatrices:
    """block_matrices, cached under no_grad."""
    if torch.is_grad_enabled():
        return block_matrices(p, q, gamma, T)
    versions = (q._version, p._version, gamma._version)
    per_q = _CACHE.get(q)
    if per_q is None:
        per_q = _CACHE[q] = {}
    hit = per_q.get(T)
    if hit is not None and hit[0] is p and hit[1] is gamma and hit[2] == versions:
        return hit[3]
    built = block_matrices(p, q, gamma, T)
    if len(per_q) >= _CACHED_BLOCKS and T not in per_q:
        per_q.pop(next(iter(per_q)))
    per_q[T] = (p, gamma, versions, built)
    return built


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
    N = q.shape[-1]
    A = L // T
    m = _matrices(p, q, gamma, T)
    blocks = x.reshape(B, D, A, T).transpose(0, 1).reshape(D, B * A, T)  # (D, B*A, T); a view when B == 1
    # both operands contiguous: CPU bmm on strided operands copies batch by batch (~70x slower)
    blocks = blocks.contiguous()
    # (D, B, A, N) complex, a view of the product: p sum_s q^(T-1-s) x[aT + s]
    pushed = torch.view_as_complex(torch.bmm(blocks, m.sums).reshape(D, B, A, N, 2))
    step = m.step[:, None, :]  # (D, 1, N)
    e = h.transpose(0, 1)  # (D, B, N): E_0
    states = pushed.new_empty(D, B, A, N)  # E_a for a < A, written in place (autograd records the copies)
    for a in range(A):
        states[:, :, a] = e
        e = torch.addcmul(pushed[:, :, a], step, e)  # E_(a+1) = q^T E_a + pushed_a
    lhs = torch.cat((blocks, torch.view_as_real(states).reshape(D, B * A, 2 * N)), dim=-1)  # (D, B*A, T+2N)
    y = torch.bmm(lhs, m.out)  # (D, B*A, T)
    return y.reshape(D, B, L).transpose(0, 1), e.transpose(0, 1)


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
    xt = _transposed(xr)  # (B, D, L)
    if L <= _RECURRENCE_MAX_LEN:
        y, h = _recurrence(xt, p, q, gamma, h)
    else:
        T = min(_MAX_BLOCK, 1 << max(3, (L.bit_length() + 1) // 2))  # ~sqrt(L), a power of two
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
