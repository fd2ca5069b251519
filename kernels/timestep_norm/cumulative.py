"""Timestep normalization vectorised over time with cumulative sums: the CPU backend and Triton twin.

The running mean and population variance over every scalar of a group up to token t (paper Eq. 4) are
    mean_t = c + S1_t / n_t,   var_t = S2_t / n_t - (S1_t / n_t)^2
with S1, S2 the cumulative sums of the per-token group moments shifted by a constant c (the carried mean,
or the first token's mean), accumulated in float64 so the difference of moments does not cancel. The
prior terms are weighted by the carried count, so a fresh state (count 0) contributes nothing.
Only the (B, L, G) statistics need float64: the per-token moments of g features and the normalisation
of x itself run in x's working precision (fp32 for fp32/bf16 input), which keeps the full-size tensors
out of float64.
"""

from __future__ import annotations

import torch

from .stats import NormStats


def timestep_norm_cumulative(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    num_groups: int,
    eps: float = 1e-5,
    initial_state: NormStats | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, NormStats | None]:
    """x (B, L, D); weight, bias (D,), scale applied as (weight + 1); initial_state (count, mean, var).
    Returns y (B, L, D) in x's dtype and (count (B,) int64, mean, var (B, G)) in fp32 (float64 for
    float64 input) if asked."""
    B, L, D = x.shape
    G = num_groups
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    g = D // G
    xs = x.to(stat_dtype)  # (B, L, D)
    # (B, L, G): per-token group mean and population variance in two passes. Every full-size op runs on
    # (B, L, D) with per-group values spread over their g features: on (B, L, G, g) views, with g = 16 as the
    # innermost dimension, the same elementwise ops ran ~5x slower on the CPU (and torch.var_mean ~10x).
    m = xs.reshape(B, L, G, g).mean(dim=-1)
    centred = xs - m.repeat_interleave(g, dim=-1)  # (B, L, D)
    v = (centred * centred).reshape(B, L, G, g).mean(dim=-1)
    m, v = m.to(torch.float64), v.to(torch.float64)
    if initial_state is None:
        count0 = torch.zeros(B, dtype=torch.int64, device=x.device)
        mean0 = torch.zeros(B, G, dtype=torch.float64, device=x.device)
        var0 = torch.ones(B, G, dtype=torch.float64, device=x.device)
    else:
        count0 = initial_state[0]
        mean0, var0 = initial_state[1].to(torch.float64), initial_state[2].to(torch.float64)
    n0 = count0.to(torch.float64)[:, None]  # (B, 1)
    if L == 0:
        y = x.new_zeros(B, 0, D)
        return y, ((count0, mean0.to(stat_dtype), var0.to(stat_dtype)) if output_final_state else None)
    shift = torch.where(n0 > 0, mean0, m[:, 0])  # (B, G)
    dm = m - shift[:, None]  # (B, L, G)
    carried_dm = mean0 - shift  # (B, G)
    s1 = (n0 * carried_dm)[:, None] + torch.cumsum(dm, dim=1)  # (B, L, G)
    s2 = (n0 * (var0 + carried_dm * carried_dm))[:, None] + torch.cumsum(v + dm * dm, dim=1)
    n_t = n0[:, None] + torch.arange(1, L + 1, device=x.device, dtype=torch.float64)[None, :, None]
    d1 = s1 / n_t
    mean_t = shift[:, None] + d1  # (B, L, G)
    var_t = (s2 / n_t - d1 * d1).clamp_min(0.0)  # (B, L, G)
    rstd = torch.rsqrt(var_t + eps).to(stat_dtype)
    scale = weight.to(stat_dtype) + 1.0  # (D,)
    normed = (xs - mean_t.to(stat_dtype).repeat_interleave(g, dim=-1)) * rstd.repeat_interleave(g, dim=-1)
    y = torch.addcmul(bias.to(stat_dtype), normed, scale).to(x.dtype)  # (B, L, D)
    if not output_final_state:
        return y, None
    return y, (count0 + L, mean_t[:, -1].to(stat_dtype), var_t[:, -1].to(stat_dtype))
