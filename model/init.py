"""Parameter initialisation of the reference implementation (spec section 1.5)."""

from __future__ import annotations

import math

import torch
from torch import nn

from megalodoc.model.cema import ComplexEMA


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


def spread_cema_memory(model: nn.Module, max_half_life: float, min_half_life: float = 8.0) -> None:
    """Give half of every channel's CEMA modes a long memory (a deviation from the paper's init).

    The paper's init draws alpha and delta around logit 0, so |q| = 1 - sigmoid(alpha) sigmoid(delta) is
    about 0.75 for every mode: a half-life of about 2.4 tokens, which a short training run barely moves,
    leaving the state carried across a chunk boundary with a memory of a few tokens. Here the slowest-
    rotating half of the N modes of each channel (n = 1 .. N/2, whose angle is n times the channel's base)
    get half-lives on a geometric ladder from `max_half_life` (n = 1) down to `min_half_life` (n = N/2)
    tokens. Only alpha changes (alpha * delta = 1 - |q|, delta as initialised), so each mode's gain for a
    constant input, |p / (1 - q)| ~ 1 / delta at small angles, stays what the paper's init gives it.
    """
    if not 1.0 < min_half_life <= max_half_life:
        raise ValueError(f"half-lives must satisfy 1 < min ({min_half_life}) <= max ({max_half_life})")
    for module in model.modules():
        if not isinstance(module, ComplexEMA):
            continue
        alpha, delta, ndim = module.alpha, module.delta, module.ndim  # alpha, delta (D, N, 1)
        slow = max(1, ndim // 2)
        steps = torch.linspace(0.0, 1.0, slow, dtype=torch.float64)  # (slow,)
        half_lives = max_half_life * (min_half_life / max_half_life) ** steps  # (slow,) longest first
        decay = 1.0 - torch.pow(0.5, 1.0 / half_lives)  # (slow,) = alpha * delta = 1 - |q|
        with torch.no_grad():
            d = torch.sigmoid(delta[:, :slow, 0].double())  # (D, slow)
            a = (decay.view(1, slow) / d).clamp(1e-7, 0.99)  # (D, slow)
            alpha[:, :slow, 0] = torch.log(a / (1.0 - a)).to(alpha.dtype)
