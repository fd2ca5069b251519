"""The forward of the cumulative timestep norm (kernels/timestep_norm/cumulative.py), keeping what its
hand-written backward (kernels/timestep_norm/cumulative_backward.py) reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Forward:
    """What a forward computed: the output, the final statistics and what the backward reads.
    Full-size (B, L, G, g) in the working precision: normed (x - mean_t) * rstd_t, centred x - m_t (the
    token's own group mean). (B, L, G) float64: dm = m_t - c, d1 = mean_t - c, n_t, raw (unclamped) var_t.
    rstd (B, L, G) in the working precision; shift c (B, G)."""

    y: torch.Tensor
    count: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor
    normed: torch.Tensor
    centred: torch.Tensor
    rstd: torch.Tensor
    dm: torch.Tensor
    d1: torch.Tensor
    n_t: torch.Tensor
    raw_var: torch.Tensor
    shift: torch.Tensor


def forward_statistics(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_groups: int, eps: float,
    count0: torch.Tensor, mean0: torch.Tensor, var0: torch.Tensor,
) -> Forward:
    """The normalization of x (B, L, D), L >= 1, after the carried statistics (count0 (B,) int64, mean0,
    var0 (B, G) float64)."""
    B, L, D = x.shape
    G = num_groups
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    g = D // G
    xg = x.to(stat_dtype).view(B, L, G, g)
    # (B, L, G): per-token group mean and population variance in two passes (one pass cancels in fp32)
    m = xg.mean(dim=-1)
    centred = xg - m[..., None]  # (B, L, G, g)
    v = (centred * centred).mean(dim=-1)
    m, v = m.to(torch.float64), v.to(torch.float64)
    n0 = count0.to(torch.float64)[:, None]  # (B, 1)
    shift = torch.where(n0 > 0, mean0, m[:, 0])  # (B, G)
    dm = m - shift[:, None]  # (B, L, G)
    carried_dm = mean0 - shift  # (B, G)
    s1 = (n0 * carried_dm)[:, None] + torch.cumsum(dm, dim=1)  # (B, L, G)
    s2 = (n0 * (var0 + carried_dm * carried_dm))[:, None] + torch.cumsum(v + dm * dm, dim=1)
    n_t = n0[:, None] + torch.arange(1, L + 1, device=x.device, dtype=torch.float64)[None, :, None]
    d1 = s1 / n_t
    mean_t = shift[:, None] + d1  # (B, L, G)
    raw_var = s2 / n_t - d1 * d1
    var_t = raw_var.clamp_min(0.0)  # (B, L, G)
    rstd64 = torch.rsqrt(var_t + eps)
    rstd = rstd64.to(stat_dtype)
    # (x - mean_t) rstd_t as x rstd_t - mean_t rstd_t: the subtraction on (B, L, G) values (an addcmul with
    # two operands broadcast over g ran ~2x slower than a product and an in-place sum)
    normed = (xg * rstd[..., None]).add_((-mean_t * rstd64).to(stat_dtype)[..., None])  # (B, L, G, g)
    scale = (weight.to(stat_dtype) + 1.0).view(G, g)
    y = torch.addcmul(bias.to(stat_dtype).view(G, g), normed, scale).view(B, L, D).to(x.dtype)
    return Forward(y, count0 + L, mean_t[:, -1].to(stat_dtype), var_t[:, -1].to(stat_dtype),
                   normed, centred, rstd, dm, d1, n_t, raw_var, shift)
