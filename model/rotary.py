"""Rotary position embedding with interleaved pairs (2i, 2i+1), positions restarting in every chunk."""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    """Rotates (..., L, H, d) tensors by position; frequencies base^(-2i/d), i < d/2, computed in fp32.

    Each pair (x_2i, x_2i+1) is the complex number x_2i + i x_2i+1, multiplied by exp(i * position *
    freq_i). Positions restart in every chunk, so only a few distinct ones occur: their unit rotations are
    built once per (dtype, device) and indexed, instead of evaluating cos and sin on every call."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (d/2,)
        self.register_buffer("freqs", inv.float(), persistent=False)
        # (real dtype, device) -> (freqs version, rotations (P, 1, d/2) complex for positions 0..P-1)
        self._tables: dict[tuple[torch.dtype, torch.device], tuple[int, torch.Tensor]] = {}

    def rotations(self, work: torch.dtype, device: torch.device, needed: int) -> torch.Tensor:
        """exp(i * position * freqs) (P, 1, d/2) complex in `work` precision, P >= needed."""
        key = (work, device)
        hit = self._tables.get(key)
        if hit is not None and hit[0] == self.freqs._version and hit[1].shape[0] >= needed:
            return hit[1]
        positions = torch.arange(needed, device=device)
        angles = positions.to(work)[:, None] * self.freqs.to(device=device, dtype=work)  # (P, d/2)
        rotations = torch.polar(torch.ones_like(angles), angles)[:, None, :]  # (P, 1, d/2)
        self._tables[key] = (self.freqs._version, rotations)
        return rotations

    def forward(self, x: torch.Tensor, positions: torch.Tensor | int, num_positions: int) -> torch.Tensor:
        """x (B, L, H, d); positions (L,) integer positions inside the chunk, all in [0, num_positions), or one
        Python int when every token sits at that position (a decoding step: the table row is taken by an
        index instead of gathering with a positions tensor)."""
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        rotations = self.rotations(work, x.device, num_positions)[positions]  # (L, 1, d/2), or (1, d/2)
        out = rotate(x if x.dtype == work else x.to(work), rotations)
        return out if out.dtype == x.dtype else out.to(x.dtype)


def rotate(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """x (..., d) real in the rotations' precision, pairs interleaved; rotations (..., d/2) complex,
    broadcast against x's pairs -> x rotated (..., d)."""
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)).contiguous())  # (..., d/2)
    return torch.view_as_real(pairs * rotations).flatten(-2)
