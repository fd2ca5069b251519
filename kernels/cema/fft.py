"""CEMA as a causal convolution computed with real FFTs, plus closed forms for the carried state.

This is the CPU backend and the twin of the Triton kernel. Equivalent form (spec section 2.3):
    y_t = sum_{s<=t} k[t-s] x_s + b_t + omega x_t,   k[d, j] = Re sum_n p gamma q^j
    b[b, d, t] = Re sum_n gamma q^(t+1) h_in[b, d, n]
    h_out = q^L h_in + p sum_j q^(L-1-j) x_j
Every sum over j of q^j is split as j = a*T + t: q^j = q^(aT) q^t, so each of them is one batched
matrix product against a (D, 2N, T) table of q^t instead of a materialised (D, N, L) Vandermonde
tensor (that tensor and its copies were most of the cost of a call). Very short inputs (decoding) run the
recurrence itself. Under torch.no_grad the tables of powers, which depend only on the coefficients and
the length, are kept per (q, length) and reused while q lives and is unchanged.
All arithmetic is fp32/complex64 (float64/complex128 when x is float64, for gradient checks); the
result is cast back to x's dtype. Long inputs are processed in segments with the state carried between
them, which is exact and bounds the size of every intermediate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.weak import WeakTensorKeyDictionary

# Up to this length the recurrence itself is cheaper than building any table (decoding is L = 1).
_RECURRENCE_MAX_LEN = 4
# Below this length a direct Toeplitz product is cheaper than two FFTs and has no padding overhead.
_DIRECT_MAX_LEN = 64
# Powers are built as q^(a*T) * q^t from two float64 tables: each factor has a small exponent, so the
# complex64 product keeps ~1e-7 relative error even at large j (exp(j log q) in fp32 would not).
_POWER_TABLE_BLOCK = 64
# Segment length budget: segment = budget / (D*N) tokens, which bounds the FFT buffers and the tables.
_POWER_TABLE_BUDGET = 1 << 24
# Cached lengths per q under no_grad (streaming uses the chunk size, the tail length and 1).
_CACHED_LENGTHS = 4


@dataclass(frozen=True)
class PowerTables:
    """Powers of q for exponents 0..length-1 in two levels, and q^length.
    low_ri (D, 2N, T): [Re q^t; Im q^t]; high (D, N, A): q^(a*T); last (D, N): q^length.
    For sums over reversed time: low_rev_t (D, T, 2N): [Re; Im] q^(T-1-t), contiguous; high_rev (D, N, A):
    q^((A-1-a)*T)."""

    low_ri: torch.Tensor
    high: torch.Tensor
    low_rev_t: torch.Tensor
    high_rev: torch.Tensor
    last: torch.Tensor
    block: int


def power_tables(q: torch.Tensor, length: int, cdtype: torch.dtype) -> PowerTables:
    """The two-level tables for q (D, N) complex, T ~ sqrt(length) so that only about 2*sqrt(length)
    complex exponentials per (d, n) are evaluated, in complex128 and rounded once to cdtype."""
    T = min(_POWER_TABLE_BLOCK, 1 << max(3, (max(1, length).bit_length() + 1) // 2))
    log_q = torch.log(q.to(torch.complex128))  # (D, N); any branch of the log gives the same powers
    small = torch.arange(T, device=q.device, dtype=torch.float64)  # (T,)
    big = torch.arange((length + T - 1) // T, device=q.device, dtype=torch.float64) * T  # (A,)
    low = torch.exp(log_q[..., None] * small).to(cdtype)  # (D, N, T)
    high = torch.exp(log_q[..., None] * big).to(cdtype)  # (D, N, A)
    last = torch.exp(log_q * length).to(cdtype)  # (D, N)
    low_ri = torch.cat((low.real, low.imag), dim=1).contiguous()  # (D, 2N, T)
    low_rev_t = low_ri.flip(-1).transpose(1, 2).contiguous()  # (D, T, 2N)
    return PowerTables(low_ri, high, low_rev_t, high.flip(-1).contiguous(), last, T)


def _apply_powers(c: torch.Tensor, tables: PowerTables, length: int) -> torch.Tensor:
    """Re(sum_n c[d, m, n] q[d, n]^j) for j < length: c (D, M, N) complex -> (D, M, length) real."""
    D, M, N = c.shape
    A = tables.high.shape[-1]
    ch = c[:, :, None, :] * tables.high.transpose(1, 2)[:, None]  # (D, M, A, N): c q^(aT)
    lhs = torch.cat((ch.real, -ch.imag), dim=-1).reshape(D, M * A, 2 * N)  # Re(u v) = u_re v_re - u_im v_im
    out = torch.bmm(lhs, tables.low_ri)  # (D, M*A, T)
    return out.reshape(D, M, A * tables.block)[..., :length]


def _state_sum(x: torch.Tensor, tables: PowerTables) -> torch.Tensor:
    """sum_j q^(L-1-j) x[b, d, j] for x (B, D, L) real -> (B, D, N) complex.
    With x left-padded by P = A*T - L zeros and cut into blocks i = a*T + t, the exponent L-1-j is
    (A-1-a)*T + (T-1-t): one batched product over t against the reversed low table, then a sum over
    blocks weighted by the reversed high table (no flipped copy of x)."""
    B, D, L = x.shape
    N = tables.high.shape[1]
    A, T = tables.high.shape[-1], tables.block
    pad = A * T - L
    blocks = torch.nn.functional.pad(x, (pad, 0)) if pad else x  # (B, D, A*T)
    blocks = blocks.reshape(B, D, A, T).transpose(0, 1).reshape(D, B * A, T)  # a view when B == 1
    # both operands contiguous: CPU bmm on strided operands copies batch by batch (~70x slower)
    s = torch.bmm(blocks.contiguous(), tables.low_rev_t)  # (D, B*A, 2N)
    s = torch.complex(s[..., :N], s[..., N:]).reshape(D, B, A, N)
    h = (s * tables.high_rev.transpose(1, 2)[:, None]).sum(2)  # (D, B, N)
    return h.transpose(0, 1)


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


def _fft_size(length: int) -> int:
    """FFT length for a linear (not circular) convolution of two length-L signals."""
    return 1 << (2 * length - 1).bit_length()


def _causal_conv(x: torch.Tensor, k: torch.Tensor, k_f: torch.Tensor | None) -> torch.Tensor:
    """y[b, d, t] = sum_{s<=t} k[d, t-s] x[b, d, s] for x (B, D, L), k (D, L); k_f is rfft(k, n) with
    n = _fft_size(L) when L > _DIRECT_MAX_LEN (None below it, where a Toeplitz product is used)."""
    L = x.shape[-1]
    if k_f is None:
        idx = torch.arange(L, device=x.device)
        lag = idx[:, None] - idx[None, :]  # (L, L): t - s
        toeplitz = k[:, lag.clamp_min(0)] * (lag >= 0)  # (D, L, L)
        return torch.einsum("dts,bds->bdt", toeplitz, x)
    n_fft = _fft_size(L)
    x_f = torch.fft.rfft(x, n=n_fft)  # (B, D, n_fft/2+1)
    return torch.fft.irfft(x_f * k_f, n=n_fft)[..., :L]


# q -> {length: (p, gamma, versions of q, p, gamma; tables; kernel k)}: reused while q lives and is
# unchanged. p and gamma are held (not their ids), so a new tensor at a recycled id can never match.
_TABLE_CACHE: WeakTensorKeyDictionary = WeakTensorKeyDictionary()


def _tables_and_kernel(
    p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, length: int
) -> tuple[PowerTables, torch.Tensor, torch.Tensor | None]:
    """Power tables, the convolution kernel k (D, length) and its spectrum (None for lengths that use
    the direct product), cached under no_grad."""

    def build() -> tuple[PowerTables, torch.Tensor, torch.Tensor | None]:
        tables = power_tables(q, length, q.dtype)
        k = _apply_powers((p * gamma)[:, None, :], tables, length)[:, 0]  # (D, L)
        k_f = None if length <= _DIRECT_MAX_LEN else torch.fft.rfft(k, n=_fft_size(length))  # (D, n/2+1)
        return tables, k, k_f

    if torch.is_grad_enabled():
        return build()
    versions = (q._version, p._version, gamma._version)
    per_q = _TABLE_CACHE.get(q)
    if per_q is None:
        per_q = _TABLE_CACHE[q] = {}
    hit = per_q.get(length)
    if hit is not None and hit[0] is p and hit[1] is gamma and hit[2] == versions:
        return hit[3]
    built = build()
    if len(per_q) >= _CACHED_LENGTHS and length not in per_q:
        per_q.pop(next(iter(per_q)))
    per_q[length] = (p, gamma, versions, built)
    return built


def _recurrence(
    x: torch.Tensor, p: torch.Tensor, q: torch.Tensor, gamma: torch.Tensor, h_in: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence step by step, for a few tokens. x (B, D, L) -> y (B, D, L), h_out (B, D, N)."""
    B, D, L = x.shape
    h = h_in if h_in is not None else torch.zeros(B, D, q.shape[-1], dtype=q.dtype, device=x.device)
    ys = []
    for t in range(L):
        h = q * h + p * x[..., t, None]  # (B, D, N)
        ys.append((gamma * h).real.sum(-1))  # (B, D); Re(gamma h) summed over n
    return torch.stack(ys, dim=-1), h


def _segment(
    x: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    gamma: torch.Tensor,
    h_in: torch.Tensor | None,
    need_state: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One segment without the omega skip. x (B, D, L) real; returns y (B, D, L) and h_out (B, D, N)."""
    L = x.shape[-1]
    if L <= _RECURRENCE_MAX_LEN:
        return _recurrence(x, p, q, gamma, h_in)
    tables, k, k_f = _tables_and_kernel(p, q, gamma, L)
    y = _causal_conv(x, k, k_f)  # (B, D, L)
    if h_in is not None:  # bias from the carried state: Re sum_n gamma q^(t+1) h_in
        y = y + _apply_powers((gamma * q * h_in).transpose(0, 1), tables, L).transpose(0, 1)
    h_out = None
    if need_state:
        h_out = p * _state_sum(x, tables)
        if h_in is not None:
            h_out = h_out + tables.last * h_in  # q^L h_in
    return y, h_out


def cema_fft(
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
    wide = x.dtype == torch.float64
    rdtype = torch.float64 if wide else torch.float32
    cdtype = torch.complex128 if wide else torch.complex64
    p, q, gamma = p.to(rdtype), q.to(cdtype), gamma.to(cdtype)
    h = initial_state.to(cdtype) if initial_state is not None else None
    xr = x.to(rdtype)  # (B, L, D)
    xt = _transposed(xr)  # (B, D, L): the FFT runs ~2x faster over contiguous rows
    segment = max(_POWER_TABLE_BLOCK, _POWER_TABLE_BUDGET // max(1, D * p.shape[-1]))
    outs = []
    for start in range(0, L, segment):
        xs = xt[..., start : start + segment]  # (B, D, Ls)
        last = start + segment >= L
        ys, h = _segment(xs, p, q, gamma, h, need_state=output_final_state or not last)
        outs.append(ys)
    y = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0] if outs else xt.new_zeros(B, D, 0)  # (B, D, L)
    y = torch.addcmul(_transposed(y), xr, omega.to(rdtype))  # (B, L, D): + omega x
    if output_final_state and h is None:  # L == 0: the state passes through unchanged
        h = torch.zeros(B, D, p.shape[-1], dtype=cdtype, device=x.device)
    return y.to(x.dtype), (h if output_final_state else None)
