"""CEMA as a causal convolution computed with real FFTs, plus closed forms for the carried state.

This is the CPU backend and the twin of the Triton kernel. Equivalent form (spec section 2.3):
    y_t = sum_{s<=t} k[t-s] x_s + b_t + omega x_t,   k[d, j] = Re sum_n p gamma q^j
    b[b, d, t] = Re sum_n gamma q^(t+1) h_in[b, d, n]
    h_out = q^L h_in + p sum_j q^(L-1-j) x_j
All arithmetic is fp32/complex64 (float64/complex128 when x is float64, for gradient checks); the
result is cast back to x's dtype. Long inputs are processed in segments with the state carried between
them, which is exact and bounds the (D, N, segment) table of powers.
"""

from __future__ import annotations

import torch

# Below this length a direct Toeplitz product is cheaper than two FFTs and has no padding overhead.
_DIRECT_MAX_LEN = 64
# Powers are built as q^(a*T) * q^b from two float64 tables: each factor has a small exponent, so the
# complex64 product keeps ~1e-7 relative error even at large j (exp(j log q) in fp32 would not).
_POWER_TABLE_BLOCK = 64
# Budget for the (D, N, segment) table of powers, in complex elements (~128 MiB of complex64).
_POWER_TABLE_BUDGET = 1 << 24


def _powers(q: torch.Tensor, length: int, cdtype: torch.dtype) -> torch.Tensor:
    """q^j for j = 0..length-1 as a (D, N, length) tensor of dtype cdtype. Built as q^(a*T) * q^b with
    T ~ sqrt(length) so that only about 2*sqrt(length) complex exponentials per (d, n) are evaluated."""
    T = min(_POWER_TABLE_BLOCK, 1 << max(3, (max(1, length).bit_length() + 1) // 2))
    log_q = torch.log(q.to(torch.complex128))  # (D, N); any branch of the log gives the same powers
    small = torch.arange(T, device=q.device, dtype=torch.float64)  # (T,)
    big = torch.arange((length + T - 1) // T, device=q.device, dtype=torch.float64) * T  # (A,)
    low = torch.exp(log_q[..., None] * small).to(cdtype)  # (D, N, T)
    high = torch.exp(log_q[..., None] * big).to(cdtype)  # (D, N, A)
    return (high[..., :, None] * low[..., None, :]).flatten(-2)[..., :length]  # (D, N, length)


def _mix(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_n a[b, d, n] v[d, n, l] -> (B, D, L) as one batched matmul over d with contiguous operands
    (torch's CPU bmm copies matrix by matrix when the batch dimension is strided)."""
    out = torch.bmm(a.transpose(0, 1).contiguous(), v)  # (D, B, N) @ (D, N, L) -> (D, B, L)
    return out.transpose(0, 1)


def _real_mix(a: torch.Tensor, v_re: torch.Tensor, v_im: torch.Tensor) -> torch.Tensor:
    """Re(sum_n a[b, d, n] V[d, n, l]) for complex a and V = v_re + i v_im, with real products only."""
    return _mix(a.real, v_re) - _mix(a.imag, v_im)


def _causal_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[b, d, t] = sum_{s<=t} k[d, t-s] x[b, d, s] for x (B, D, L), k (D, L)."""
    L = x.shape[-1]
    if L <= _DIRECT_MAX_LEN:
        idx = torch.arange(L, device=x.device)
        lag = idx[:, None] - idx[None, :]  # (L, L): t - s
        toeplitz = k[:, lag.clamp_min(0)] * (lag >= 0)  # (D, L, L)
        return torch.einsum("dts,bds->bdt", toeplitz, x)
    n_fft = 1 << (2 * L - 1).bit_length()
    x_f = torch.fft.rfft(x, n=n_fft)  # (B, D, n_fft/2+1)
    k_f = torch.fft.rfft(k, n=n_fft)  # (D, n_fft/2+1)
    return torch.fft.irfft(x_f * k_f, n=n_fft)[..., :L]


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
    vander = _powers(q, L, q.dtype)  # (D, N, L): q^j
    v_re, v_im = vander.real.contiguous(), vander.imag.contiguous()  # strided views would make bmm copy per batch
    k = _real_mix((p * gamma)[None], v_re, v_im)[0]  # (D, L)
    y = _causal_conv(x, k)  # (B, D, L)
    h_out = None
    if h_in is not None:
        y = y + _real_mix(gamma * q * h_in, v_re, v_im)  # bias from the carried state
    if need_state:
        # sum_j q^(L-1-j) x_j = sum_j q^j x_(L-1-j)  -> (B, D, N)
        x_rev = x.flip(-1).transpose(0, 1).contiguous()  # (D, B, L)
        h_re = torch.bmm(x_rev, v_re.transpose(1, 2)).transpose(0, 1)  # (B, D, N)
        h_im = torch.bmm(x_rev, v_im.transpose(1, 2)).transpose(0, 1)
        h_out = p * torch.complex(h_re, h_im)
        if h_in is not None:
            h_out = h_out + vander[..., -1] * q * h_in  # q^L h_in
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
    xt = x.to(rdtype).transpose(1, 2)  # (B, D, L)
    segment = max(_POWER_TABLE_BLOCK, _POWER_TABLE_BUDGET // max(1, D * p.shape[-1]))
    outs = []
    for start in range(0, L, segment):
        xs = xt[..., start : start + segment]  # (B, D, Ls)
        last = start + segment >= L
        ys, h = _segment(xs, p, q, gamma, h, need_state=output_final_state or not last)
        outs.append(ys)
    y = torch.cat(outs, dim=-1) if outs else xt.new_zeros(B, D, 0)  # (B, D, L)
    y = y + omega.to(rdtype)[:, None] * xt
    if output_final_state and h is None:  # L == 0: the state passes through unchanged
        h = torch.zeros(B, D, p.shape[-1], dtype=cdtype, device=x.device)
    return y.transpose(1, 2).to(x.dtype), (h if output_final_state else None)
