"""The moving-average gated attention sub-layer (spec section 1.2), one step per line of its table."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from megalodoc.model.attention import chunked_attention
from megalodoc.model.cema import ComplexEMA
from megalodoc.model.config import MegalodonConfig
from megalodoc.model.norms import RMSNorm, TimestepNorm
from megalodoc.model.rotary import Rotary
from megalodoc.model.state import LayerState


class MovingAverageGatedAttention(nn.Module):
    """Timestep norm -> CEMA -> RMSNorm -> shared z -> normalized q/k -> chunk attention -> gate -> residual."""

    def __init__(self, cfg: MegalodonConfig) -> None:
        super().__init__()
        D, Z, E = cfg.model_dim, cfg.z_dim, cfg.value_dim
        self.cfg = cfg
        self.timenorm = TimestepNorm(D, cfg.norm_num_groups, cfg.norm_eps)
        self.cema = ComplexEMA(D, cfg.cema_ndim)
        self.rmsnorm = RMSNorm(D, cfg.norm_eps)
        self.wz = nn.Linear(D, Z)
        self.wv = nn.Linear(D, E)
        self.wr = nn.Linear(D, E)
        self.wh1 = nn.Linear(D, D)
        self.wh2 = nn.Linear(E, D, bias=False)
        self.gamma = nn.Parameter(torch.zeros(2, Z))  # q/k scale, applied as (gamma + 1) / sqrt(d_z)
        self.beta = nn.Parameter(torch.zeros(2, Z))  # q/k offset

    def forward(
        self, x: torch.Tensor, state: LayerState | None, rotary: Rotary
    ) -> tuple[torch.Tensor, LayerState]:
        """x (B, L, D) -> (B, L, D) and the layer's state after the last token."""
        cfg = self.cfg
        B, L, _ = x.shape
        H, dz = cfg.num_heads, cfg.head_dim
        drop = self.training
        # without gradients the SiLUs and the gate overwrite their fresh operands, which autograd would need
        # (with the in-place sums below: ~2% less time per streamed chunk on one CPU thread)
        inplace = not torch.is_grad_enabled()
        x_tn, norm_state = self.timenorm(x, None if state is None else state.norm)  # (B, L, D)
        c, ema = self.cema(x_tn, None if state is None else state.ema)  # (B, L, D), (B, D, N)
        mx = self.rmsnorm(c)  # (B, L, D)
        if drop:
            mx = F.dropout(mx, cfg.hidden_dropout, drop)
        z = self.wz(mx).view(B, L, H, dz)  # (B, L, H, d_z)
        z = z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)  # per-head RMS, no affine
        scale = ((self.gamma + 1.0) / math.sqrt(dz)).view(2, H, dz)
        offset = self.beta.view(2, H, dz)
        q = torch.addcmul(offset[0], z, scale[0])  # (B, L, H, d_z): z * scale + offset
        k = torch.addcmul(offset[1], z, scale[1])
        v = F.silu(self.wv(x_tn), inplace=inplace).view(B, L, H, cfg.value_head_dim)  # (B, L, H, d_v): from TSN
        r = F.silu(self.wr(mx), inplace=inplace)  # (B, L, E) reset gate
        if state is None:
            cached_k, cached_v = k.new_zeros(B, 0, H, dz), v.new_zeros(B, 0, H, cfg.value_head_dim)
        else:
            cached_k, cached_v = state.keys.to(k.dtype), state.values.to(v.dtype)
        o, keys, values = chunked_attention(
            q, k, v, cached_k, cached_v,
            chunk_size=cfg.chunk_size, rotary=rotary, dropout=cfg.attention_dropout if drop else 0.0,
        )
        o = o.reshape(B, L, -1)  # (B, L, E)
        u = r.mul_(o) if inplace and r.dtype == o.dtype else o * r  # (B, L, E)
        if drop:
            u = F.dropout(u, cfg.hidden_dropout, drop)
        h = self.wh1(mx).add_(self.wh2(u))  # (B, L, D); add_ on a fresh product: autograd keeps neither operand
        h = F.dropout(h, cfg.dropout, drop) if drop else h
        y = h.add_(x) if h.dtype == x.dtype else h + x  # as +: a bf16 product (autocast) plus fp32 x is fp32
        return y, LayerState(ema=ema, norm=norm_state, keys=keys, values=values)

