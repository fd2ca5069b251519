"""Attention of a single new token over the keys of its chunk, without gradients: the decoding step.

softmax(q k^T) v for one query is a weighted sum over at most C keys. Written as a product summed over
the key width and a weighted sum over keys, it takes 4 tensor operations instead of the head-by-head
products of model/attention_autograd.py (a few microseconds each: a sizeable share of a decoding step of
a small model). bf16/fp16 inputs are computed in fp32, as the softmax of the general path is. Checked
against scaled_dot_product_attention in tests/model/test_attention_one_token.py.
"""

from __future__ import annotations

import torch


def one_query_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """q (B, 1, H, d), keys (B, n, H, d), values (B, n, H, d_v), n >= 1 -> o (B, 1, H, d_v) in values' dtype.
    Softmax scale 1 (the learnt scale is in q and k)."""
    low = q.dtype in (torch.float16, torch.bfloat16)
    work = torch.float32 if low else q.dtype
    scores = (keys.to(work) * q.to(work)).sum(-1)  # (B, n, H)
    probs = torch.softmax(scores, dim=1)  # over the keys
    out = (probs[..., None] * values.to(work)).sum(1, keepdim=True)  # (B, 1, H, d_v)
    return out.to(values.dtype)
