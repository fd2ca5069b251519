"""The decoding path of chunked attention (one new token, no gradients) against the general path and
scaled_dot_product_attention: values, carried keys and values, chunk ends, branches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from megalodoc.model.attention import chunked_attention
from megalodoc.model.attention_one_query import one_query_attention, product_and_sum_fits
from megalodoc.model.rotary import Rotary

from tolerances import assert_close, rel_rms

H, DZ, DV, C = 2, 8, 12, 6


def sdpa_one_query(q, keys, values):
    out = F.scaled_dot_product_attention(q.transpose(1, 2).double(), keys.transpose(1, 2).double(),
                                         values.transpose(1, 2).double(), scale=1.0)
    return out.transpose(1, 2)  # (B, 1, H, d_v) float64


# (keys, value width): product-and-sum up to PRODUCT_AND_SUM_MAX = 65,536 keys x values per row and head,
# head by head beyond
@pytest.mark.parametrize(("n", "dv"), [(1, DV), (2, DV), (7, DV), (128, DV), (64, 1024), (65, 1024), (300, 256)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_one_query_attention_equals_sdpa(n, dv, dtype):
    torch.manual_seed(n)
    q = (torch.randn(3, 1, H, DZ) * 2).to(dtype)
    keys, values = (torch.randn(3, n, H, DZ) * 2).to(dtype), torch.randn(3, n, H, dv).to(dtype)
    got = one_query_attention(q, keys, values)
    assert got.shape == (3, 1, H, dv) and got.dtype == dtype
    want = sdpa_one_query(q, keys, values)
    if dtype == torch.bfloat16:  # the head-by-head branch, as the general path, also rounds scores to bf16
        assert rel_rms(got, want) < 2e-2, f"n={n} bf16 rel-RMS {rel_rms(got, want):.2e}"
    else:
        assert_close(got, want, 1e-12 if dtype == torch.float64 else 1e-5, f"n={n} {dtype}")


# (batch, keys, value width), H = 2: the limit in all (2 ** 19 elements) picks head by head for a large batch
@pytest.mark.parametrize(("B", "n", "dv", "fits"), [(8, 128, 256, True), (9, 128, 256, False),
                                                    (64, 16, 256, True), (65, 16, 256, False)])
def test_a_large_batch_takes_the_head_by_head_products_with_the_same_result(B, n, dv, fits):
    torch.manual_seed(B)
    q = torch.randn(B, 1, H, DZ, dtype=torch.float64)
    keys, values = torch.randn(B, n, H, DZ, dtype=torch.float64), torch.randn(B, n, H, dv, dtype=torch.float64)
    assert product_and_sum_fits(values) == fits
    assert_close(one_query_attention(q, keys, values), sdpa_one_query(q, keys, values), 1e-12, f"B={B}")


def decode(q, k, v, cached, rotary, grad: bool):
    """Feed tokens one at a time; returns the outputs (B, L, H, d_v) and the carried (keys, values)."""
    outs = []
    with torch.set_grad_enabled(grad):
        for t in range(q.shape[1]):
            o, *cached = chunked_attention(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1], *cached,
                                           chunk_size=C, rotary=rotary)
            outs.append(o)
    return torch.cat(outs, 1), cached


@pytest.mark.parametrize("start", [0, 2, C - 1])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_token_by_token_equals_one_call_across_chunk_ends(start, dtype):
    """From a cache of `start` tokens, 15 tokens one at a time (crossing two chunk ends) against one call
    over all 15 (the general path), and against the same tokens with gradients on (the general path at L=1)."""
    torch.manual_seed(10 + start)
    rotary = Rotary(DZ, 10000.0)
    B, L = 2, 15
    q, k = torch.randn(B, L, H, DZ, dtype=dtype), torch.randn(B, L, H, DZ, dtype=dtype)
    v = torch.randn(B, L, H, DV, dtype=dtype)
    cached = (torch.randn(B, start, H, DZ, dtype=dtype), torch.randn(B, start, H, DV, dtype=dtype))
    with torch.no_grad():
        whole, *whole_cache = chunked_attention(q, k, v, *cached, chunk_size=C, rotary=rotary)
    stepped, step_cache = decode(q, k, v, cached, rotary, grad=False)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    graded, grad_cache = decode(*leaves, cached, rotary, grad=True)
    assert graded.requires_grad  # the general path ran
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert_close(stepped, whole, tol, "token by token vs one call")
    assert_close(stepped, graded.detach(), tol, "no-grad step vs autograd step")
    keep = (start + L) % C
    for got, one_call, with_grad, name in zip(step_cache, whole_cache, grad_cache, ("keys", "values"), strict=True):
        assert got.shape[1] == keep and one_call.shape[1] == keep
        assert_close(got, one_call, tol, f"carried {name}")
        assert_close(got, with_grad.detach(), tol, f"carried {name} vs autograd")


def test_the_token_that_ends_a_chunk_carries_nothing_and_the_next_starts_fresh():
    torch.manual_seed(3)
    rotary = Rotary(DZ, 10000.0)
    keys, values = torch.randn(1, C - 1, H, DZ), torch.randn(1, C - 1, H, DV)
    q, k, v = torch.randn(1, 1, H, DZ), torch.randn(1, 1, H, DZ), torch.randn(1, 1, H, DV)
    with torch.no_grad():
        o, k_out, v_out = chunked_attention(q, k, v, keys, values, chunk_size=C, rotary=rotary)
        assert k_out.shape[1] == 0 and v_out.shape[1] == 0
        rotated_q = rotary(q, torch.tensor([C - 1]), C)
        all_keys = torch.cat((keys, rotary(k, torch.tensor([C - 1]), C)), 1)
        assert_close(o, sdpa_one_query(rotated_q, all_keys, torch.cat((values, v), 1)), 1e-5, "last token")
        o2, k2, _ = chunked_attention(q, k, v, k_out, v_out, chunk_size=C, rotary=rotary)
        assert_close(o2, v, 1e-6, "a chunk's first token attends to itself only")
        assert k2.shape[1] == 1


def test_two_branches_from_one_cache_do_not_see_each_other():
    """A state continued twice (a branch) must give each continuation its own keys: the second append to
    the same chunk buffer gets a copy."""
    torch.manual_seed(4)
    rotary = Rotary(DZ, 10000.0)
    q, k, v = torch.randn(1, 3, H, DZ), torch.randn(1, 3, H, DZ), torch.randn(1, 3, H, DV)
    with torch.no_grad():
        _, *cached = chunked_attention(q, k, v, torch.zeros(1, 0, H, DZ), torch.zeros(1, 0, H, DV),
                                       chunk_size=C, rotary=rotary)
        a = [torch.randn(1, 1, H, DZ), torch.randn(1, 1, H, DZ), torch.randn(1, 1, H, DV)]
        b = [torch.randn(1, 1, H, DZ), torch.randn(1, 1, H, DZ), torch.randn(1, 1, H, DV)]
        o_a, ka, _ = chunked_attention(*a, *cached, chunk_size=C, rotary=rotary)
        o_b, kb, _ = chunked_attention(*b, *cached, chunk_size=C, rotary=rotary)
        o_a_again, ka_again, _ = chunked_attention(*a, *cached, chunk_size=C, rotary=rotary)
    assert cached[0].shape[1] == 3 and ka.shape[1] == 4 and kb.shape[1] == 4
    assert torch.equal(o_a, o_a_again) and torch.equal(ka, ka_again)
    assert not torch.equal(ka[:, 3], kb[:, 3]) and torch.equal(ka[:, :3], kb[:, :3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_rotating_at_an_int_position_equals_rotating_by_a_positions_tensor(dtype):
    torch.manual_seed(5)
    rotary = Rotary(DZ, 10000.0)
    x = torch.randn(2, 1, H, DZ).to(dtype)
    for position in (0, 3, C - 1):
        assert torch.equal(rotary(x, position, C), rotary(x, torch.tensor([position]), C))
