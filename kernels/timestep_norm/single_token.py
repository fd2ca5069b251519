"""The timestep norm of one new token after carried statistics, without gradients: the decoding step.

The general forward (kernels/timestep_norm/cumulative_forward.py) builds cumulative sums over time; for a
single token that is ~60 tensor operations of a few microseconds each, a sizeable share of a decoding
step of a small model; this update takes 36, views included. One token merges into the carried (count
n0, mean, variance) by the pairwise update of Chan et al., in float64 on the (B, G) statistics as the
general path does:
    n = n0 + 1,  delta = m - mean0,  mean = mean0 + delta / n,
    var = (n0 var0 + v + delta^2 n0 / n) / n
with m, v the token's own group mean and population variance (one `var_mean`, in the working precision).
A fresh state (count 0) gives mean = m and var = v. Checked against the general forward and the Welford
loop in tests/kernels/test_timestep_norm_single_token.py.
"""

from __future__ import annotations

import torch


def single_token_statistics(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_groups: int, eps: float,
    count0: torch.Tensor, mean0: torch.Tensor, var0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, 1, D); count0 (B,) int64; mean0, var0 (B, G) float64 -> y (B, 1, D) in x's dtype, count (B,),
    mean and var (B, G) in fp32 (float64 for float64 input)."""
    B, L, D = x.shape
    G = num_groups
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xg = (x if x.dtype == stat_dtype else x.to(stat_dtype)).view(B, G, D // G)  # (B, G, g)
    v, m = torch.var_mean(xg, dim=-1, correction=0)  # (B, G) the token's population variance and mean
    n0 = count0.to(torch.float64).unsqueeze(1)  # (B, 1)
    n = n0 + 1.0
    delta = m.to(torch.float64) - mean0  # (B, G)
    mean = torch.addcdiv(mean0, delta, n)  # mean0 + delta / n
    var = torch.addcmul((n0 * var0).add_(v.to(torch.float64)), delta * delta, n0 / n).div_(n).clamp_min_(0.0)
    rstd64 = (var + eps).rsqrt_()  # (B, G)
    # (x - mean) rstd as x rstd - mean rstd, as the general forward computes it
    shift = (mean * rstd64).neg_().to(stat_dtype).unsqueeze(-1)  # (B, G, 1)
    # two roundings, as there: a fused multiply-add would leave x rstd - mean rstd nonzero for a constant token
    normed = (xg * rstd64.to(stat_dtype).unsqueeze(-1)).add_(shift)  # (B, G, g)
    scale = (weight.to(stat_dtype) + 1.0).view(G, -1)
    y = torch.addcmul(bias.to(stat_dtype).view(G, -1), normed, scale).view(B, L, D)
    if y.dtype != x.dtype:
        y = y.to(x.dtype)
    return y, count0 + 1, mean.to(stat_dtype), var.to(stat_dtype)
