"""Rotary position embedding with interleaved pairs (2i, 2i+1), positions restarting in every chunk."""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    """Rotates (..., L, H, d) tensors by position; frequencies base^(-2i/d), i < d/2, computed in fp32."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (d/2,)
        self.register_buffer("freqs", inv.float(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, L, H, d); positions (L,) integer positions inside the chunk."""
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        angles = positions.to(work)[:, None] * self.freqs.to(work)  # (L, d/2)
        cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (L, 1, d/2)
        pairs = x.to(work).unflatten(-1, (-1, 2))  # (B, L, H, d/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2).to(x.dtype)
