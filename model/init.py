"""Parameter initialisation of the reference implementation (spec section 1.5)."""

from __future__ import annotations

import math

import torch
from torch import nn


def init_linear(layer: nn.Linear, mode: str, dim: int) -> None:
    """Weights by init_mode, biases zero. "he": Kaiming-normal with a=sqrt(5), i.e. std 1/sqrt(3 fan_in)."""
    with torch.no_grad():
        if mode == "he":
            nn.init.kaiming_normal_(layer.weight, a=math.sqrt(5.0))
        elif mode == "bert":
            nn.init.normal_(layer.weight, 0.0, 0.02)
        elif mode == "gaussian":
            std = 1.0 / math.sqrt(dim)
            nn.init.trunc_normal_(layer.weight, 0.0, std, -3 * std, 3 * std)
        elif mode == "xavier":
            nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            layer.bias.zero_()


def init_embedding_like(weight: torch.Tensor, dim: int) -> None:
    """Embedding and untied head: truncated normal, std 1/sqrt(D), cut at +-3 std."""
    std = 1.0 / math.sqrt(dim)
    with torch.no_grad():
        nn.init.trunc_normal_(weight, 0.0, std, -3 * std, 3 * std)
