"""Normalization layers with the (w + 1) parameterisation: RMSNorm, LayerNorm and TimestepNorm.

Every scale parameter is stored zero-initialised and applied as (weight + 1) (paper App. B.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from megalodoc.kernels.dispatch import timestep_norm
from megalodoc.model.state import NormState


class RMSNorm(nn.Module):
    """x / rms(x) * (weight + 1) over the last dimension (D,)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype != torch.float64 else x
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * (self.weight + 1.0)).to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with scale applied as (weight + 1) and a bias."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight + 1.0, self.bias, self.eps)


class TimestepNorm(nn.Module):
    """Causal cumulative group normalization over time (paper Eq. 4) with carried statistics."""

    def __init__(self, dim: int, num_groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, state: NormState | None) -> tuple[torch.Tensor, NormState]:
        """x (B, L, D) -> y (B, L, D) and the statistics after the last token."""
        y, (count, mean, var) = timestep_norm(
            x,
            self.weight,
            self.bias,
            num_groups=self.num_groups,
            eps=self.eps,
            initial_state=None if state is None else state.as_tuple(),
            output_final_state=True,
        )
        return y, NormState(count, mean, var)
