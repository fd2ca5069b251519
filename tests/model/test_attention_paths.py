"""The fast attention pieces against their plain definitions: rotary tables against cos/sin evaluated per
call, the written-out attention against scaled_dot_product_attention (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import megalodoc.model.attention as attention
from megalodoc.model.rotary import Rotary

from tolerances import rel_rms


def rotate_by_definition(x: torch.Tensor, positions: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Pairs (x_2i, x_2i+1) rotated by angle position * freq_i, in float64."""
    angles = positions.double()[:, None] * freqs.double()  # (L, d/2)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (L, 1, d/2)
    even, odd = x.double()[..., 0::2], x.double()[..., 1::2]
    out = torch.empty_like(x, dtype=torch.float64)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotary_matches_the_pairwise_rotation(dtype):
    torch.manual_seed(0)
    rotary = Rotary(head_dim=8, base=10000.0)
    x = torch.randn(2, 6, 3, 8, dtype=dtype)
    positions = torch.tensor([13, 14, 15, 0, 1, 2])  # wraps at a chunk of 16
    got = rotary(x, positions, 16)
    want = rotate_by_definition(x, positions, rotary.freqs)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def test_rotary_tables_grow_and_follow_a_changed_frequency_buffer():
    torch.manual_seed(1)
    rotary = Rotary(head_dim=4, base=100.0)
    x = torch.randn(1, 3, 1, 4, dtype=torch.float64)
    rotary(x, torch.arange(3), 4)  # a table of 4 positions
    far = torch.tensor([40, 41, 42])
    torch.testing.assert_close(rotary(x, far, 64).double(), rotate_by_definition(x, far, rotary.freqs))
    with torch.no_grad():
        rotary.freqs.mul_(0.5)  # an in-place change (as loading a buffer does) must not reuse old tables
    torch.testing.assert_close(rotary(x, far, 64).double(), rotate_by_definition(x, far, rotary.freqs))


def sdpa(q, k, v, mask, causal):
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         attn_mask=mask, is_causal=causal, scale=1.0)
    return out.transpose(1, 2)


@pytest.mark.parametrize("case", ["causal", "bottom-right", "grouped"])
def test_plain_attention_equals_sdpa_values_and_gradients(case, monkeypatch):
    torch.manual_seed(2)
    B, Lq, H, d, dv = 5, 7, 2, 4, 12  # d_v != d_z, as in the model
    Lk = Lq if case != "bottom-right" else Lq + 3
    q, k, v = (torch.randn(B, L, H, w, dtype=torch.float64, requires_grad=True)
               for L, w in ((Lq, d), (Lk, d), (Lk, dv)))
    mask, causal = None, True
    if case == "bottom-right":
        rows, cols = torch.arange(Lq)[:, None], torch.arange(Lk)[None, :]
        mask, causal = cols <= rows + (Lk - Lq), False
    if case == "grouped":  # scores of two (batch) rows at a time
        monkeypatch.setattr(attention, "_PLAIN_SCORE_ELEMENTS", 2 * H * Lq * Lk)
    got = attention._plain_attention(q, k, v, mask, causal)
    want = sdpa(q, k, v, mask, causal)
    torch.testing.assert_close(got, want)
    with torch.no_grad():  # the inference path writes head by head into strided views
        torch.testing.assert_close(attention._plain_attention(q, k, v, mask, causal), want)
    grad = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, (q, k, v), grad)
    want_grads = torch.autograd.grad(want, (q, k, v), grad)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_plain_attention_keeps_bf16_softmax_in_fp32():
    torch.manual_seed(3)
    q, k = torch.randn(1, 16, 1, 8), torch.randn(1, 16, 1, 8)
    v = torch.randn(1, 16, 1, 32)
    want = sdpa(q.double(), k.double(), v.double(), None, True)
    with torch.no_grad():
        got = attention._plain_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), None, True)
    assert got.dtype == torch.bfloat16
    assert ((got.double() - want).norm() / want.norm()).item() < 1e-2


def test_bf16_attention_gradients_keep_the_softmax_backward_in_fp32():
    # values sharing a large common part: g_o v^T then has a large common term per row that the softmax
    # backward subtracts away, which bf16 arithmetic would round into noise
    torch.manual_seed(4)
    q, k = torch.randn(2, 16, 2, 8), torch.randn(2, 16, 2, 8)
    v = 64.0 + 0.5 * torch.randn(2, 16, 2, 32)
    grad = torch.randn(2, 16, 2, 32)
    # the reference sees the same bf16-rounded inputs
    wide = [t.bfloat16().double().requires_grad_(True) for t in (q, k, v)]
    want = torch.autograd.grad(sdpa(*wide, None, True), wide, grad.bfloat16().double())
    low = [t.bfloat16().requires_grad_(True) for t in (q, k, v)]
    got = torch.autograd.grad(attention._plain_attention(*low, None, True), low, grad.bfloat16())
    for name, a, b in zip("qkv", got, want, strict=True):
        assert a.dtype == torch.bfloat16
        assert rel_rms(a, b) < 3e-2, f"g_{name}: relative error {rel_rms(a, b):.3g}"


@pytest.mark.parametrize("needed", ["q", "k", "v", "qk"])
def test_attention_gradients_of_some_inputs_equal_those_computed_for_all(needed):
    """The backward computes only what is asked for (g_v alone skips the softmax backward): the gradients
    it returns equal those of the all-inputs run, exactly."""
    torch.manual_seed(5)
    q, k, v = torch.randn(3, 9, 2, 4), torch.randn(3, 9, 2, 4), torch.randn(3, 9, 2, 6)
    grad = torch.randn(3, 9, 2, 6)

    def grads(names):
        leaves = {n: t.clone().requires_grad_(n in names) for n, t in zip("qkv", (q, k, v), strict=True)}
        out = attention._plain_attention(leaves["q"], leaves["k"], leaves["v"], None, True)
        return dict(zip(names, torch.autograd.grad(out, [leaves[n] for n in names], grad), strict=True))

    every, some = grads("qkv"), grads(needed)
    for name in needed:
        torch.testing.assert_close(some[name], every[name], rtol=0, atol=0)
