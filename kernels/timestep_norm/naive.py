"""Timestep normalization as a per-token Welford loop in float64: the oracle (spec section 3.2).

State per row: count (B,) int64 shared by the groups, mean and population variance (B, G). The prior
(no state) is count 0, mean 0, var 1; with count 0 the first merge overwrites it.
"""

from __future__ import annotations

import torch

from .stats import NormStats


def timestep_norm_naive(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    num_groups: int,
    eps: float = 1e-5,
    initial_state: NormStats | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, NormStats | None]:
    """Loop reference. x (B, L, D); weight, bias (D,) with the scale applied as (weight + 1)."""
    B, L, D = x.shape
    G = num_groups
    xg = x.to(torch.float64).reshape(B, L, G, D // G)  # (B, L, G, g)
    if initial_state is None:
        count = torch.zeros(B, dtype=torch.int64, device=x.device)
        mean = torch.zeros(B, G, dtype=torch.float64, device=x.device)
        var = torch.ones(B, G, dtype=torch.float64, device=x.device)
    else:
        count, mean, var = initial_state[0].clone(), initial_state[1].double(), initial_state[2].double()
    scale = (weight.to(torch.float64) + 1.0).reshape(G, D // G)
    shift = bias.to(torch.float64).reshape(G, D // G)
    ys = []
    for t in range(L):
        m_t = xg[:, t].mean(-1)  # (B, G)
        v_t = xg[:, t].var(-1, unbiased=False)  # (B, G)
        count = count + 1
        c = 1.0 / count.to(torch.float64)[:, None]  # (B, 1)
        delta = m_t - mean
        mean = mean + c * delta
        var = var + c * (v_t + (1 - c) * delta * delta - var)
        normed = (xg[:, t] - mean[..., None]) / torch.sqrt(var[..., None] + eps)  # (B, G, g)
        ys.append(normed * scale + shift)
    y = torch.stack(ys, dim=1).reshape(B, L, D) if ys else x.new_zeros(B, 0, D, dtype=torch.float64)
    return y.to(x.dtype), ((count, mean, var) if output_final_state else None)
