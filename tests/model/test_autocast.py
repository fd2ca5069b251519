"""Under bf16 autocast the PyTorch twins keep the precisions they choose, forward and backward.

CEMA's twin and the timestep norm compute in fp32/float64 whatever autocast says, so inside an autocast
context (the backward run inside it too) they must give exactly what they give outside it. Before the
twins switched autocast off, CEMA's backward failed on bf16 products meeting fp32 matrices.
"""

from __future__ import annotations

import torch

import megalodoc.model.attention as attention
from megalodoc.kernels.cema.blocked import cema_blocked
from megalodoc.kernels.timestep_norm.cumulative import timestep_norm_cumulative
from megalodoc.model import Megalodon

from model_helpers import micro_config, random_cema_coefficients
from tolerances import rel_rms


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def run_twice(fn, inputs):
    """fn(*inputs) -> tensors, and the gradients of a fixed random projection of them w.r.t. inputs, first
    plainly, then with forward and backward inside a bf16 autocast context."""
    results = []
    for context in (torch.autocast("cpu", enabled=False), bf16_autocast()):
        leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
        with context:
            outs = fn(*leaves)
            g = torch.Generator().manual_seed(0)
            loss = sum((o.real * torch.randn(o.shape, generator=g)).sum() for o in outs)
            grads = torch.autograd.grad(loss, leaves)
        results.append(([o.detach() for o in outs], grads))
    return results


def test_cema_twin_is_unchanged_by_autocast_forward_and_backward():
    torch.manual_seed(0)
    B, L, D, N = 2, 70, 6, 3  # 70 tokens: blocks of 16 and a tail of 6
    p, q, gamma, omega = random_cema_coefficients(D, N, torch.float32)
    x = torch.randn(B, L, D)
    h0 = torch.randn(B, D, N, dtype=torch.complex64)

    def cema(x, p, q, gamma, omega, h0):
        return cema_blocked(x, p, q, gamma, omega, initial_state=h0, output_final_state=True)

    (plain_outs, plain_grads), (auto_outs, auto_grads) = run_twice(cema, (x, p, q, gamma, omega, h0))
    for a, b in zip(auto_outs + list(auto_grads), plain_outs + list(plain_grads), strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.no_grad(), bf16_autocast():  # the inference path (cached block matrices)
        y, h = cema_blocked(x, p, q, gamma, omega, initial_state=h0, output_final_state=True)
    torch.testing.assert_close(y, plain_outs[0], rtol=0, atol=0)
    torch.testing.assert_close(h, plain_outs[1], rtol=0, atol=0)


def test_timestep_norm_twin_is_unchanged_by_autocast_forward_and_backward():
    torch.manual_seed(1)
    B, L, D, G = 2, 9, 8, 2
    x = 3.0 + torch.randn(B, L, D)
    weight, bias = 0.1 * torch.randn(D), 0.1 * torch.randn(D)
    count = torch.tensor([5, 0])
    mean0, var0 = torch.randn(B, G), 0.5 + torch.rand(B, G)

    def norm(x, weight, bias, mean0, var0):
        y, (_, mean, var) = timestep_norm_cumulative(
            x, weight, bias, num_groups=G, initial_state=(count, mean0, var0), output_final_state=True)
        return y, mean, var

    (plain_outs, plain_grads), (auto_outs, auto_grads) = run_twice(norm, (x, weight, bias, mean0, var0))
    for a, b in zip(auto_outs + list(auto_grads), plain_outs + list(plain_grads), strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_attention_backward_inside_autocast_keeps_its_own_precision():
    # as in the model under autocast: q, k fp32 (scaled and offset by fp32 parameters), v bf16 (a linear)
    torch.manual_seed(2)
    q, k = torch.randn(1, 12, 2, 4), torch.randn(1, 12, 2, 4)
    v = torch.randn(1, 12, 2, 8).bfloat16().float()

    def attend(q, k, v):
        return (attention._plain_attention(q, k, v.bfloat16(), None, True),)

    (plain_outs, plain_grads), (auto_outs, auto_grads) = run_twice(attend, (q, k, v))
    for a, b in zip(auto_outs + list(auto_grads), plain_outs + list(plain_grads), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_model_trains_under_cpu_bf16_autocast():
    torch.manual_seed(3)
    cfg = micro_config(vocab_size=32, model_dim=16, z_dim=8, value_dim=16, ffn_hidden_dim=24, cema_ndim=4,
                       norm_num_groups=4, chunk_size=8)
    model = Megalodon(cfg)
    ids = torch.randint(4, cfg.vocab_size, (2, 21))
    losses, grads = [], []
    for context in (torch.autocast("cpu", enabled=False), bf16_autocast()):
        model.zero_grad()
        with context:
            logits, _ = model(ids)
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert abs(losses[1] - losses[0]) < 0.05 * abs(losses[0])
    assert torch.isfinite(grads[1]).all()
    assert rel_rms(grads[1], grads[0]) < 0.1, f"bf16 gradients off by {rel_rms(grads[1], grads[0]):.3g}"


def test_inference_under_autocast_keeps_the_fp32_residual_stream():
    """Without gradients the sub-layers add in place; under autocast their bf16 products must still be
    added to the fp32 residual as + does (an fp32 result), not rounded into a bf16 buffer. Every attention
    sub-layer's and block's output stays fp32 with and without gradients, and the two forwards agree."""
    torch.manual_seed(4)
    cfg = micro_config(vocab_size=32, model_dim=16, z_dim=8, value_dim=16, ffn_hidden_dim=24, cema_ndim=4,
                       norm_num_groups=4, chunk_size=8)
    model = Megalodon(cfg).eval()
    ids = torch.randint(4, cfg.vocab_size, (2, 21))
    block_dtypes = []
    hooks = [module.register_forward_hook(lambda _m, _i, out: block_dtypes.append(out[0].dtype))
             for block in model.layers for module in (block.mega, block)]
    with bf16_autocast():
        with torch.no_grad():
            inference, _ = model(ids)
        training_mode, _ = model(ids)
    for hook in hooks:
        hook.remove()
    assert block_dtypes == [torch.float32] * (4 * cfg.num_layers)  # attention sub-layers and blocks
    assert rel_rms(inference, training_mode.detach()) < 1e-5
