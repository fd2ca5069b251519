"""Timestep normalization vectorised over time with cumulative sums: the CPU backend and Triton twin.

The running mean and population variance over every scalar of a group up to token t (paper Eq. 4) are
    mean_t = c + S1_t / n_t,   var_t = S2_t / n_t - (S1_t / n_t)^2
with S1, S2 the cumulative sums of the per-token group moments shifted by a constant c (the carried mean,
or the first token's mean), accumulated in float64 so the difference of moments does not cancel. The
prior terms are weighted by the carried count, so a fresh state (count 0) contributes nothing.
Only the (B, L, G) statistics need float64: the per-token moments of g features and the normalisation
of x itself run in x's working precision (fp32 for fp32/bf16 input), which keeps the full-size tensors
out of float64. Autocast is switched off inside (kernels/autocast_off.py): these precisions are chosen.
With gradients, kernels/timestep_norm/cumulative_backward.py differentiates these formulas by hand.
Without them a single token (decoding) takes the pairwise update of kernels/timestep_norm/single_token.py.
"""

from __future__ import annotations

import torch

from ..autocast_off import without_autocast
from .cumulative_backward import TimestepNormFunction
from .cumulative_forward import forward_statistics
from .single_token import single_token_statistics
from .stats import NormStats


@without_autocast
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
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if initial_state is None:
        count0 = torch.zeros(B, dtype=torch.int64, device=x.device)
        mean0 = torch.zeros(B, num_groups, dtype=torch.float64, device=x.device)
        var0 = torch.ones(B, num_groups, dtype=torch.float64, device=x.device)
    else:
        count0 = initial_state[0]
        mean0, var0 = initial_state[1].to(torch.float64), initial_state[2].to(torch.float64)
    if L == 0:
        y = x.new_zeros(B, 0, D)
        return y, ((count0, mean0.to(stat_dtype), var0.to(stat_dtype)) if output_final_state else None)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, weight, bias, mean0, var0)):
        y, mean, var = TimestepNormFunction.apply(x, weight, bias, mean0, var0, count0, num_groups, eps)
        count = count0 + L
    elif L == 1:  # decoding: one token merged into the carried statistics, ~half the operations
        y, count, mean, var = single_token_statistics(x, weight, bias, num_groups, eps, count0, mean0, var0)
    else:
        out = forward_statistics(x, weight, bias, num_groups, eps, count0, mean0, var0)
        y, count, mean, var = out.y, out.count, out.mean, out.var
    return y, ((count, mean, var) if output_final_state else None)
