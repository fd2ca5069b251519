"""Normalized feed-forward network with the two-hop residual (spec sections 1.3-1.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from megalodoc.model.config import MegalodonConfig
from megalodoc.model.norms import LayerNorm


class NormalizedFeedForward(nn.Module):
    """out = residual + Dropout(W2 HiddenDropout(act(LN(y)))); act = SiLU(W1 .) [* W3 .] for SwiGLU.
    The residual is the block input x, not y (two-hop residual, paper Eq. 11)."""

    def __init__(self, cfg: MegalodonConfig, layer_id: int) -> None:
        super().__init__()
        D, F_ = cfg.model_dim, cfg.ffn_hidden_dim
        self.cfg = cfg
        self.norm = LayerNorm(D, cfg.norm_eps)
        self.fc1 = nn.Linear(D, F_, bias=False)
        self.fc2 = nn.Linear(F_, D, bias=False)
        self.fc3 = nn.Linear(D, F_, bias=False) if cfg.swiglu else None
        # optional per-feature output scale, initialised to 0.1 * 0.5^layer (off in every preset)
        self.alpha = nn.Parameter(torch.full((D,), 0.1 * 0.5**layer_id)) if cfg.rescale_nffn else None

    def forward(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """y (B, L, D) is the attention sub-layer's output, residual (B, L, D) the block input."""
        cfg, drop = self.cfg, self.training
        inplace = not torch.is_grad_enabled()  # without gradients the SiLU and the gate overwrite fresh products
        h = self.norm(y)
        a = F.silu(self.fc1(h), inplace=inplace)  # (B, L, F)
        if self.fc3 is not None:
            a = a.mul_(self.fc3(h)) if inplace else a * self.fc3(h)
        out = F.dropout(self.fc2(F.dropout(a, cfg.hidden_dropout, drop)), cfg.dropout, drop)  # (B, L, D)
        if self.alpha is not None:
            out = out * self.alpha
        # in place in either mode (no backward reads a sum's operands), unless the dtypes differ: as +, a bf16
        # product (autocast) plus an fp32 residual is fp32
        return out.add_(residual) if out.dtype == residual.dtype else out + residual
