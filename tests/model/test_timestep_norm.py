"""Timestep norm: PyTorch twin and Welford loop vs a direct float64 evaluation of paper Eq. 4."""

import pytest
import torch

from megalodoc.kernels.timestep_norm.cumulative import timestep_norm_cumulative
from megalodoc.kernels.timestep_norm.naive import timestep_norm_naive

from tolerances import FLOAT64_EXACT, TWIN_VS_NAIVE_FP32, assert_close, rel_rms


def eq4_direct(x, weight, bias, G, eps=1e-5):
    """Eq. 4 straight from its definition: statistics over every scalar of the group up to t."""
    B, L, D = x.shape
    xg = x.double().reshape(B, L, G, D // G)
    out = torch.empty_like(xg)
    for t in range(L):
        seen = xg[:, : t + 1].permute(0, 2, 1, 3).reshape(B, G, -1)  # (B, G, (t+1)*g)
        mu = seen.mean(-1)
        var = seen.var(-1, unbiased=False)
        out[:, t] = (xg[:, t] - mu[..., None]) / torch.sqrt(var[..., None] + eps)
    out = out * (weight.double() + 1).reshape(G, -1) + bias.double().reshape(G, -1)
    return out.reshape(B, L, D)


@pytest.mark.parametrize("impl", [timestep_norm_cumulative, timestep_norm_naive], ids=["cumulative", "naive"])
def test_matches_eq4(impl):
    B, L, D, G = 2, 40, 12, 3
    x = torch.randn(B, L, D, dtype=torch.float64) * 1.5 + 0.3
    w, b = torch.randn(D, dtype=torch.float64) * 0.1, torch.randn(D, dtype=torch.float64) * 0.1
    y, _ = impl(x, w, b, num_groups=G)
    assert_close(y, eq4_direct(x, w, b, G), FLOAT64_EXACT, f"{impl.__name__} vs Eq. 4")


def test_chunked_equals_whole_and_loop():
    B, L, D, G = 3, 50, 8, 2
    x = torch.randn(B, L, D, dtype=torch.float64) * 2 + 5  # large offset: tests the shifted sums
    w, b = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
    y_full, s_full = timestep_norm_cumulative(x, w, b, num_groups=G, output_final_state=True)
    ys, s = [], None
    for a, c in [(0, 1), (1, 17), (17, 18), (18, 50)]:
        y, s = timestep_norm_cumulative(x[:, a:c], w, b, num_groups=G, initial_state=s, output_final_state=True)
        ys.append(y)
    assert_close(torch.cat(ys, 1), y_full, FLOAT64_EXACT, "chunked y")
    _, s_loop = timestep_norm_naive(x, w, b, num_groups=G, output_final_state=True)
    assert torch.equal(s[0], s_full[0]) and torch.equal(s[0], s_loop[0])
    for i, name in [(1, "mean"), (2, "var")]:
        assert_close(s[i], s_full[i], FLOAT64_EXACT, f"chunked {name}")
        assert_close(s_loop[i], s_full[i], FLOAT64_EXACT, f"loop {name}")


def test_fp32_state_has_fp32_dtypes_and_count():
    x = torch.randn(2, 5, 8)
    _, (count, mean, var) = timestep_norm_cumulative(
        x, torch.zeros(8), torch.zeros(8), num_groups=4, output_final_state=True
    )
    assert count.dtype == torch.int64 and count.tolist() == [5, 5]
    assert mean.dtype == torch.float32 and var.dtype == torch.float32


def test_gradcheck_with_carried_state_batch3():
    B, L, D, G = 3, 6, 4, 2
    inputs = [
        torch.randn(B, L, D, dtype=torch.float64, requires_grad=True),
        (torch.randn(D, dtype=torch.float64) * 0.1).requires_grad_(),
        (torch.randn(D, dtype=torch.float64) * 0.1).requires_grad_(),
        torch.randn(B, G, dtype=torch.float64, requires_grad=True),
        (torch.rand(B, G, dtype=torch.float64) + 0.5).requires_grad_(),
    ]
    count = torch.tensor([3, 1, 7])

    def f(x, w, b, mean, var):
        y, (_, m, v) = timestep_norm_cumulative(
            x, w, b, num_groups=G, initial_state=(count, mean, var), output_final_state=True
        )
        return y, m, v

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_gradients_match_loop_with_carried_state(offset):
    """The hand-written backward (x, weight, bias, carried mean and variance, through the output and the
    final statistics) against autograd through the float64 Welford loop; a large offset exercises the
    shifted sums."""
    B, L, D, G = 3, 37, 12, 3
    count = torch.tensor([0, 4, 11])
    leaves = [
        torch.randn(B, L, D, dtype=torch.float64) * 1.5 + offset,
        torch.randn(D, dtype=torch.float64) * 0.1,
        torch.randn(D, dtype=torch.float64) * 0.1,
        torch.randn(B, G, dtype=torch.float64) + offset,
        torch.rand(B, G, dtype=torch.float64) + 0.5,
    ]
    dy = torch.randn(B, L, D, dtype=torch.float64)
    dmean, dvar = torch.randn(B, G, dtype=torch.float64), torch.randn(B, G, dtype=torch.float64)

    def grads(fn):
        inputs = [t.clone().requires_grad_(True) for t in leaves]
        y, (_, mean, var) = fn(*inputs[:3], num_groups=G, initial_state=(count, inputs[3], inputs[4]),
                               output_final_state=True)
        loss = (y * dy).sum() + (mean * dmean).sum() + (var * dvar).sum()
        return torch.autograd.grad(loss, inputs)

    names = ["x", "weight", "bias", "carried mean", "carried var"]
    for name, g, g_ref in zip(names, grads(timestep_norm_cumulative), grads(timestep_norm_naive), strict=True):
        assert_close(g, g_ref, 1e-8, f"d/d{name} (offset {offset})", rtol=1e-8)


def test_fp32_gradients_match_loop():
    B, L, D, G = 2, 300, 32, 4
    x = torch.randn(B, L, D) * 2 + 1
    w, b = torch.randn(D) * 0.1, torch.randn(D) * 0.1
    dy = torch.randn(B, L, D)

    def grads(fn, dtype):
        inputs = [t.to(dtype).requires_grad_(True) for t in (x, w, b)]
        y, _ = fn(*inputs, num_groups=G)
        return torch.autograd.grad((y * dy.to(dtype)).sum(), inputs)

    for name, g, g_ref in zip(["x", "weight", "bias"], grads(timestep_norm_cumulative, torch.float32),
                              grads(timestep_norm_naive, torch.float64), strict=True):
        assert rel_rms(g, g_ref) < TWIN_VS_NAIVE_FP32, f"fp32 d/d{name} rel-RMS {rel_rms(g, g_ref):.2e}"


def test_gradients_where_the_variance_is_clamped_at_zero():
    """Where S2/n - (S1/n)^2 comes out below 0 the variance is clamped to 0 and no gradient flows through
    it. A slightly negative carried variance (as rounding could leave) and tokens equal to the carried
    mean make it negative at every step of group 0; group 1 stays ordinary. The hand-written backward is
    compared with autograd through the same formulas (forward_statistics differentiated by PyTorch)."""
    from megalodoc.kernels.timestep_norm.cumulative_forward import forward_statistics

    B, L, D, G = 1, 5, 8, 2
    count = torch.tensor([3])
    x = torch.randn(B, L, D, dtype=torch.float64)
    x[..., :4] = 0.25  # group 0: every token equals the carried mean
    leaves = [x, 0.1 * torch.randn(D, dtype=torch.float64), 0.1 * torch.randn(D, dtype=torch.float64),
              torch.tensor([[0.25, 0.0]], dtype=torch.float64), torch.tensor([[-1e-9, 0.8]], dtype=torch.float64)]
    assert (forward_statistics(*leaves[:3], G, 1e-5, count, *leaves[3:]).raw_var[..., 0] < 0).all()
    dy = torch.randn(B, L, D, dtype=torch.float64)
    dmean, dvar = torch.randn(B, G, dtype=torch.float64), torch.randn(B, G, dtype=torch.float64)

    def grads(by_hand):
        inputs = [t.clone().requires_grad_(True) for t in leaves]
        if by_hand:
            y, (_, mean, var) = timestep_norm_cumulative(*inputs[:3], num_groups=G, initial_state=(count, *inputs[3:]),
                                                         output_final_state=True)
        else:
            out = forward_statistics(*inputs[:3], G, 1e-5, count, *inputs[3:])
            y, mean, var = out.y, out.mean, out.var
        loss = (y * dy).sum() + (mean * dmean).sum() + (var * dvar).sum()
        return torch.autograd.grad(loss, inputs)

    names = ["x", "weight", "bias", "carried mean", "carried var"]
    for name, g, g_ref in zip(names, grads(True), grads(False), strict=True):
        assert torch.isfinite(g).all()
        assert_close(g, g_ref, 1e-10, f"d/d{name}", rtol=1e-10)
