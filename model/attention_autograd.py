"""Attention written out head by head, forward and backward, on strided views of (B, L, H, d) tensors.

With gradients, the plain path (model/attention.py) spelt as batched products on (B, H, L, d) views made
autograd copy v, the output and their gradients between the (B, L, H, d) and (B, H, L, d) layouts: with
d_v = 256 that was ~7 ms of copies per 2,048-token layer call on one CPU thread. Here every product
reads and writes strided views directly (BLAS takes a row stride), and the backward is written out:
    P = softmax(q k^T + mask),  o = P v
    g_v = P^T g_o,  g_P = g_o v^T,  g_S = P * (g_P - rowsum(g_P * P)),  g_q = g_S k,  g_k = g_S^T q
Tested against scaled_dot_product_attention, values and gradients (tests/model/test_attention_paths.py).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from megalodoc.kernels.autocast_off import backward_without_autocast


def attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      blocked: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, Lq, H, d), k (B, Lk, H, d), v (B, Lk, H, dv), blocked (Lq, Lk) True where attention is not
    allowed (or None) -> o (B, Lq, H, dv) and the probabilities (B, H, Lq, Lk) in the softmax's precision.
    The learnt scale is in q and k (softmax scale 1); a bf16/fp16 softmax runs in fp32."""
    B, Lq, H, _ = q.shape
    Lk = k.shape[1]
    scores = q.new_empty(B, H, Lq, Lk)
    for h in range(H):
        torch.bmm(q[:, :, h], k[:, :, h].transpose(1, 2), out=scores[:, h])
    if blocked is not None:
        scores.masked_fill_(blocked, float("-inf"))
    low = scores.dtype in (torch.float16, torch.bfloat16)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32 if low else None)  # (B, H, Lq, Lk)
    weights = probs.to(v.dtype)
    out = v.new_empty(B, Lq, H, v.shape[-1])
    for h in range(H):
        torch.bmm(weights[:, h], v[:, :, h], out=out[:, :, h])
    return out, probs


class AttentionFunction(torch.autograd.Function):
    """(q, k, v, blocked) -> o, as attention_forward, with the backward written out head by head."""

    @staticmethod
    def forward(ctx, q, k, v, blocked):
        out, probs = attention_forward(q, k, v, blocked)
        ctx.save_for_backward(q, k, v, probs)
        return out

    @staticmethod
    @backward_without_autocast
    @once_differentiable  # the saved probabilities carry no graph: no second derivative
    def backward(ctx, g_out):
        q, k, v, probs = ctx.saved_tensors
        H = q.shape[2]
        work = probs.dtype  # fp32 for bf16/fp16 inputs: the softmax backward differences near-equal terms
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        g_q, g_k, g_v = (torch.empty_like(t, dtype=work) if need else None
                         for t, need in ((q, need_q), (k, need_k), (v, need_v)))
        for h in range(H):
            g_o = g_out[:, :, h].to(work)  # (B, Lq, dv)
            p = probs[:, h]  # (B, Lq, Lk)
            if need_v:
                torch.bmm(p.transpose(1, 2), g_o, out=g_v[:, :, h])
            if need_q or need_k:
                g_p = torch.bmm(g_o, v[:, :, h].transpose(1, 2).to(work))  # (B, Lq, Lk)
                g_s = (g_p - (g_p * p).sum(-1, keepdim=True)).mul_(p)  # softmax backward; 0 where blocked
                if need_q:
                    torch.bmm(g_s, k[:, :, h].to(work), out=g_q[:, :, h])
                if need_k:
                    torch.bmm(g_s.transpose(1, 2), q[:, :, h].to(work), out=g_k[:, :, h])
        return (None if g_q is None else g_q.to(q.dtype), None if g_k is None else g_k.to(k.dtype),
                None if g_v is None else g_v.to(v.dtype), None)
