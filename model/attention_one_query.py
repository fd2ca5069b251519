"""Attention of a single new token over the keys of its chunk, without gradients: the decoding step.

softmax(q k^T) v for one query is a weighted sum over at most C keys. For a small cache, written as a
product summed over the key width and a weighted sum over keys, it takes 4 tensor operations instead of
the head-by-head products of model/attention_autograd.py (a few microseconds each: a sizeable share of a
decoding step of a small model). The weighted sum writes an fp32 temporary as large as the values, so a
large cache (mega200M: up to 2,048 keys of 2,048 values) or a large batch takes the head-by-head
products, which read the values once. 1 thread, product-and-sum against head by head:
- one head of d_v = 2,048: 75 against 84 us at 32 keys, 112 against 108 at 64, 1,581 against 580 at 1,000;
- 2 heads of d_v = 256 at 256 keys: 97 against 133 us at B = 1, 530 against 324 at B = 8; at 128 keys,
  269 against 366 at B = 8 and 1,755 against 1,169 at B = 32.
bf16/fp16 inputs are computed in fp32, as the softmax of the general path is.
Both branches are checked against scaled_dot_product_attention in tests/model/test_attention_one_token.py.
"""

from __future__ import annotations

import torch

from megalodoc.model.attention_autograd import attention_forward

# Largest n_keys * d_v per batch row and head for the product-and-sum: a 256 KB fp32 temporary per head.
# On one CPU thread it won up to here at (H, d_v) = (1, 2048), (2, 256) and (4, 512), and lost beyond.
PRODUCT_AND_SUM_MAX = 1 << 16
# Largest temporary in all (B * H * n_keys * d_v elements, 2 MiB in fp32): at (H, d_v) = (2, 256) it won
# up to 2 MiB (B = 8, 128 keys) and lost from 4 MiB (B = 8, 256 keys; B = 32, 128 keys) on.
PRODUCT_AND_SUM_TOTAL_MAX = 1 << 19


def product_and_sum_fits(values: torch.Tensor) -> bool:
    """values (B, n, H, d_v): whether one_query_attention takes the product-and-sum for this cache."""
    B, n, H, dv = values.shape
    return n * dv <= PRODUCT_AND_SUM_MAX and B * n * H * dv <= PRODUCT_AND_SUM_TOTAL_MAX


def one_query_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """q (B, 1, H, d), keys (B, n, H, d), values (B, n, H, d_v), n >= 1 -> o (B, 1, H, d_v) in values' dtype.
    Softmax scale 1 (the learnt scale is in q and k)."""
    if not product_and_sum_fits(values):
        return attention_forward(q, keys, values, None)[0]
    low = q.dtype in (torch.float16, torch.bfloat16)
    work = torch.float32 if low else q.dtype
    scores = (keys.to(work) * q.to(work)).sum(-1)  # (B, n, H)
    probs = torch.softmax(scores, dim=1)  # over the keys
    out = (probs[..., None] * values.to(work)).sum(1, keepdim=True)  # (B, 1, H, d_v)
    return out.to(values.dtype)
