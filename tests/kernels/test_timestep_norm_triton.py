"""The Triton timestep norm (CPU interpreter here, CUDA when marked gpu) against its cumulative-sum twin:
outputs, final (count, mean, var) and the gradients of x, weight, bias and the carried mean/var, on
awkward lengths, group sizes that are not powers of two, B = 1 and 3, with and without a carried state
(different counts per row); outputs are NaN-poisoned before the kernels write them."""

from __future__ import annotations

import pytest
import torch

from tolerances import TRITON_VS_TWIN_REL_RMS, assert_close, rel_rms

pytest.importorskip("triton")

from megalodoc.kernels.timestep_norm import triton_tsn  # noqa: E402
from megalodoc.kernels.timestep_norm.cumulative import timestep_norm_cumulative  # noqa: E402
from megalodoc.kernels.timestep_norm.triton_tsn import (  # noqa: E402
    TsnConfig,
    timestep_norm_apply,
    timestep_norm_triton,
)

D_ODD, G_ODD = 24, 4  # group size 6: feature lanes are masked


def _nan_alloc(shape, dtype, device):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Every buffer a kernel writes starts as NaN, so an element the kernel forgets shows up."""
    monkeypatch.setattr(triton_tsn, "_alloc", _nan_alloc)


def make_inputs(B: int, L: int, D: int, G: int, *, seed: int, state: bool, device: str = "cpu") -> dict:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D, generator=gen) * 1.5 + 0.3 + torch.linspace(0, 2, L)[None, :, None]  # drifting mean
    state_t = None
    if state:
        count = torch.tensor([0, 5, 17, 1000][:B] if B > 1 else [9], dtype=torch.int64)
        state_t = (count, torch.randn(B, G, generator=gen), torch.rand(B, G, generator=gen) + 0.5)
    out = {
        "x": x,
        "weight": torch.randn(D, generator=gen) * 0.2,
        "bias": torch.randn(D, generator=gen) * 0.2,
        "state": state_t,
        "dy": torch.randn(B, L, D, generator=gen),
        "dmean": torch.randn(B, G, generator=gen),
        "dvar": torch.randn(B, G, generator=gen),
    }
    out = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
    if state_t is not None:
        out["state"] = tuple(t.to(device) for t in state_t)
    return out


def run_with_grads(fn, inputs: dict, G: int, **kwargs) -> dict:
    """Forward with a final state, a backward from random cotangents; returns outputs and every .grad."""
    x = inputs["x"].clone().requires_grad_(True)
    w = inputs["weight"].clone().requires_grad_(True)
    b = inputs["bias"].clone().requires_grad_(True)
    leaves = {"x": x, "weight": w, "bias": b}
    state = None
    if inputs["state"] is not None:
        count, mean0, var0 = inputs["state"]
        leaves["mean0"] = mean0.clone().requires_grad_(True)
        leaves["var0"] = var0.clone().requires_grad_(True)
        state = (count, leaves["mean0"], leaves["var0"])
    y, (count_f, mean_f, var_f) = fn(
        x, w, b, num_groups=G, initial_state=state, output_final_state=True, **kwargs
    )
    loss = (y.float() * inputs["dy"]).sum() + (mean_f * inputs["dmean"]).sum() + (var_f * inputs["dvar"]).sum()
    loss.backward()
    out = {"y": y.detach(), "count": count_f, "mean": mean_f.detach(), "var": var_f.detach()}
    out.update({f"d{n}": leaf.grad for n, leaf in leaves.items()})
    return out


def assert_matches(got: dict, want: dict, rel: float = TRITON_VS_TWIN_REL_RMS, max_rel: float = 1e-4) -> None:
    """Counts exact; rel-RMS within the table's bound; every element within max_rel of the largest."""
    assert got.keys() == want.keys()
    assert torch.equal(got.pop("count"), want.pop("count")), "final count"
    for name in want:
        assert got[name].dtype == want[name].dtype, f"{name}: dtype {got[name].dtype} != {want[name].dtype}"
        err = rel_rms(got[name], want[name])
        assert err <= rel, f"{name}: rel-RMS {err:.2e} > {rel:.0e}"
        scale = want[name].abs().max().item()
        assert_close(got[name], want[name], atol=max_rel * scale + 1e-30, what=name)


@pytest.mark.parametrize("state", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("L", [1, 63, 64, 65])
def test_matches_cumulative_twin(L: int, B: int, state: bool) -> None:
    inputs = make_inputs(B, L, D_ODD, G_ODD, seed=1000 * L + 10 * B + state, state=state)
    got = run_with_grads(timestep_norm_triton, inputs, G_ODD)
    assert_matches(got, run_with_grads(timestep_norm_cumulative, inputs, G_ODD))


def test_many_segments_tiles_and_group_blocks() -> None:
    """Several segments of several tiles, and a group block (2) that does not divide the groups (3)."""
    inputs = make_inputs(3, 37, 24, 3, seed=7, state=True)
    got = run_with_grads(timestep_norm_apply, inputs, 3, config=TsnConfig(segment_len=16, block_t=8, block_g=2))
    assert_matches(got, run_with_grads(timestep_norm_cumulative, inputs, 3))


def test_long_carried_history_keeps_precision() -> None:
    """A state carried from a million tokens with a large mean: the per-token increments are tiny."""
    inputs = make_inputs(2, 65, 16, 2, seed=4, state=True)
    inputs["x"] = inputs["x"] + 50.0
    inputs["state"] = (torch.tensor([1_000_000, 3]), torch.full((2, 2), 50.2), torch.full((2, 2), 2.0))
    assert_matches(
        run_with_grads(timestep_norm_triton, inputs, 2), run_with_grads(timestep_norm_cumulative, inputs, 2)
    )


def test_split_run_equals_one_run() -> None:
    inputs = make_inputs(2, 65, D_ODD, G_ODD, seed=3, state=True)
    x, w, b = inputs["x"], inputs["weight"], inputs["bias"]
    kw = {"num_groups": G_ODD, "output_final_state": True}
    y_full, s_full = timestep_norm_triton(x, w, b, initial_state=inputs["state"], **kw)
    y_a, s_a = timestep_norm_triton(x[:, :30], w, b, initial_state=inputs["state"], **kw)
    y_b, s_b = timestep_norm_triton(x[:, 30:], w, b, initial_state=s_a, **kw)
    assert_close(torch.cat([y_a, y_b], dim=1), y_full, atol=1e-5, what="split y")
    assert torch.equal(s_b[0], s_full[0])
    assert_close(s_b[1], s_full[1], atol=1e-6, what="split mean")
    assert_close(s_b[2], s_full[2], atol=1e-6, what="split var")


def test_no_state_requested_returns_none() -> None:
    inputs = make_inputs(1, 5, 8, 2, seed=5, state=False)
    y, s = timestep_norm_triton(inputs["x"], inputs["weight"], inputs["bias"], num_groups=2)
    assert s is None
    y_ref, _ = timestep_norm_cumulative(inputs["x"], inputs["weight"], inputs["bias"], num_groups=2)
    assert_close(y, y_ref, atol=1e-5, what="y")


def test_bf16_input_is_computed_in_fp32() -> None:
    """bf16 x: loaded as fp32, so the result is the fp32 twin's on the same values, rounded once to bf16
    for y and dx (within one bf16 ulp, 2^-7 relative: the interpreter truncates on store where a GPU
    rounds to nearest); the statistics stay fp32 and match closely."""
    inputs = make_inputs(2, 65, D_ODD, G_ODD, seed=9, state=True)
    inputs["x"] = inputs["x"].to(torch.bfloat16).float()  # the values bf16 can hold
    inputs["dy"] = inputs["dy"].to(torch.bfloat16).float()  # the cotangent reaches a bf16 y rounded
    want = run_with_grads(timestep_norm_cumulative, inputs, G_ODD)
    got = run_with_grads(timestep_norm_triton, dict(inputs, x=inputs["x"].to(torch.bfloat16)), G_ODD)
    assert got["y"].dtype == torch.bfloat16 and got["dx"].dtype == torch.bfloat16
    for name in ("y", "dx"):
        scale = want[name].abs().max().item()
        assert_close(got[name], want[name], atol=1e-5 * scale, rtol=2.0**-7, what=f"bf16 {name}")
    assert_matches({k: v for k, v in got.items() if k not in ("y", "dx")},
                   {k: v for k, v in want.items() if k not in ("y", "dx")})


def test_bad_groups_are_rejected() -> None:
    inputs = make_inputs(1, 4, 8, 2, seed=2, state=False)
    with pytest.raises(ValueError, match="num_groups=3"):
        timestep_norm_triton(inputs["x"], inputs["weight"], inputs["bias"], num_groups=3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("L", [4095, 4096, 16385])
@pytest.mark.parametrize("B", [1, 3])
def test_gpu_matches_cumulative_twin(L: int, B: int) -> None:
    inputs = make_inputs(B, L, 1024, 32, seed=L + B, state=True, device="cuda")
    got = run_with_grads(timestep_norm_triton, inputs, 32)
    assert_matches(got, run_with_grads(timestep_norm_cumulative, inputs, 32), max_rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_and_split_run() -> None:
    inputs = make_inputs(2, 8192, 2048, 64, seed=1, state=True, device="cuda")
    x = inputs["x"].to(torch.bfloat16)
    w, b = inputs["weight"], inputs["bias"]
    kw = {"num_groups": 64, "output_final_state": True}
    y, s = timestep_norm_triton(x, w, b, initial_state=inputs["state"], **kw)
    y_ref, s_ref = timestep_norm_cumulative(x, w, b, initial_state=inputs["state"], **kw)
    assert rel_rms(y, y_ref) <= TRITON_VS_TWIN_REL_RMS
    assert rel_rms(s[1], s_ref[1]) <= TRITON_VS_TWIN_REL_RMS and rel_rms(s[2], s_ref[2]) <= TRITON_VS_TWIN_REL_RMS
    y_a, s_a = timestep_norm_triton(x[:, :3000], w, b, initial_state=inputs["state"], **kw)
    y_b, s_b = timestep_norm_triton(x[:, 3000:], w, b, initial_state=s_a, **kw)
    assert rel_rms(torch.cat([y_a, y_b], 1), y) <= 1e-2  # bf16 outputs: rounding differences only
    assert rel_rms(s_b[1], s[1]) <= 1e-5 and rel_rms(s_b[2], s[2]) <= 1e-5
