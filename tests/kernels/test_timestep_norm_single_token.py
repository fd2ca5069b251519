"""The single-token timestep norm (decoding) against the general cumulative forward and the Welford loop."""

import pytest
import torch

from megalodoc.kernels.timestep_norm import cumulative
from megalodoc.kernels.timestep_norm.cumulative import timestep_norm_cumulative
from megalodoc.kernels.timestep_norm.cumulative_forward import forward_statistics
from megalodoc.kernels.timestep_norm.naive import timestep_norm_naive
from megalodoc.kernels.timestep_norm.single_token import single_token_statistics

from tolerances import FLOAT64_EXACT, TWIN_VS_NAIVE_FP32, assert_close

D, G = 24, 4


def carried_state(B: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows with counts 0 (fresh: mean 0, var 1), 1, 1,000 and 10 million, means far from 0."""
    count = torch.tensor([0, 1, 1000, 10_000_000][:B], dtype=torch.int64)
    mean = (torch.randn(B, G, dtype=torch.float64) + 50.0).to(dtype)
    var = (torch.rand(B, G, dtype=torch.float64) * 3 + 0.1).to(dtype)
    mean[count == 0], var[count == 0] = 0.0, 1.0
    return count, mean, var


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_one_token_equals_the_general_forward(dtype):
    torch.manual_seed(0)
    B = 4
    x = (torch.randn(B, 1, D, dtype=torch.float64) * 2 + 50.0).to(dtype)
    w, b = torch.randn(D).to(dtype) * 0.1, torch.randn(D).to(dtype) * 0.1
    count0, mean0, var0 = carried_state(B, torch.float32 if dtype != torch.float64 else torch.float64)
    fast = single_token_statistics(x, w, b, G, 1e-5, count0, mean0.double(), var0.double())
    ref = forward_statistics(x, w, b, G, 1e-5, count0, mean0.double(), var0.double())
    assert torch.equal(fast[1], ref.count) and fast[1].tolist() == [1, 2, 1001, 10_000_001]
    assert fast[0].dtype == dtype and fast[2].dtype == ref.mean.dtype and fast[3].dtype == ref.var.dtype
    if dtype == torch.float64:
        tol = FLOAT64_EXACT
    elif dtype == torch.float32:
        tol = TWIN_VS_NAIVE_FP32 * 10  # |y| up to ~30: a few fp32 ulps
    else:
        tol = 0.25  # bf16 output: one bf16 ulp at |y| ~ 30
    assert_close(fast[0], ref.y, tol, f"{dtype} y")
    assert_close(fast[2], ref.mean, FLOAT64_EXACT if dtype == torch.float64 else 1e-5, f"{dtype} mean", rtol=1e-6)
    assert_close(fast[3], ref.var, FLOAT64_EXACT if dtype == torch.float64 else 1e-5, f"{dtype} var", rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_token_by_token_equals_one_call_and_the_loop(dtype):
    torch.manual_seed(1)
    B, L = 2, 300
    x = (torch.randn(B, L, D, dtype=torch.float64) * 3 + 7.0).to(dtype)
    w, b = torch.randn(D, dtype=dtype) * 0.1, torch.randn(D, dtype=dtype) * 0.1
    with torch.no_grad():
        whole, s_whole = timestep_norm_cumulative(x, w, b, num_groups=G, output_final_state=True)
        loop, s_loop = timestep_norm_naive(x, w, b, num_groups=G, output_final_state=True)
        ys, s = [], None
        for t in range(L):
            y, s = timestep_norm_cumulative(x[:, t : t + 1], w, b, num_groups=G, initial_state=s,
                                            output_final_state=True)
            ys.append(y)
    stepped = torch.cat(ys, 1)
    tol = FLOAT64_EXACT if dtype == torch.float64 else TWIN_VS_NAIVE_FP32 * 10
    assert_close(stepped, whole, tol, "token by token vs one call")
    assert_close(stepped, loop, tol, "token by token vs the Welford loop")
    assert torch.equal(s[0], s_whole[0]) and s[0].tolist() == [L, L]
    for i, name in [(1, "mean"), (2, "var")]:
        assert_close(s[i], s_whole[i], tol, f"final {name} vs one call", rtol=1e-6)
        assert_close(s[i], s_loop[i].to(dtype), tol, f"final {name} vs the loop", rtol=1e-6)


def test_a_constant_first_token_gives_zero_variance_as_the_general_path():
    x = torch.full((1, 1, D), 3.0)
    w, b = torch.zeros(D), torch.zeros(D)
    count0 = torch.zeros(1, dtype=torch.int64)
    mean0, var0 = torch.zeros(1, G, dtype=torch.float64), torch.ones(1, G, dtype=torch.float64)
    y, count, mean, var = single_token_statistics(x, w, b, G, 1e-5, count0, mean0, var0)
    ref = forward_statistics(x, w, b, G, 1e-5, count0, mean0, var0)
    assert torch.equal(var, ref.var) and var.abs().max() == 0 and torch.equal(mean, ref.mean)
    assert_close(y, ref.y, 1e-6, "constant token")


def test_only_a_gradient_free_single_token_takes_the_update(monkeypatch):
    """The dispatch: L = 1 without gradients uses the update (and agrees with the autograd path); L = 2
    and L = 1 with a weight that needs a gradient do not."""
    calls = []

    def spy(*args):
        calls.append(args[0].shape)
        return single_token_statistics(*args)

    monkeypatch.setattr(cumulative, "single_token_statistics", spy)
    torch.manual_seed(2)
    x = torch.randn(2, 1, D, dtype=torch.float64)
    w = torch.randn(D, dtype=torch.float64, requires_grad=True)
    b = torch.randn(D, dtype=torch.float64)
    state = carried_state(2, torch.float64)
    y_grad, s_grad = timestep_norm_cumulative(x, w, b, num_groups=G, initial_state=state, output_final_state=True)
    assert calls == []
    with torch.no_grad():
        y, s = timestep_norm_cumulative(x, w, b, num_groups=G, initial_state=state, output_final_state=True)
        timestep_norm_cumulative(torch.randn(2, 2, D, dtype=torch.float64), w, b, num_groups=G)
    assert calls == [(2, 1, D)]
    assert_close(y, y_grad, FLOAT64_EXACT, "no-grad update vs autograd path")
    for i in (1, 2):
        assert_close(s[i], s_grad[i].detach(), FLOAT64_EXACT, "statistics", rtol=1e-12)
