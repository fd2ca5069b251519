"""The statistics timestep normalization carries from one call to the next."""

from __future__ import annotations

import torch

NormStats = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # count (B,), mean (B, G), var (B, G)
