"""The Triton CEMA scan (CPU interpreter here, CUDA when marked gpu) against its blocked twin: outputs, final
state and the gradients of every input, on awkward lengths, a D that is not a power of two, B = 1 and 3,
with and without a carried state; outputs are NaN-poisoned before the kernels write them."""

from __future__ import annotations

import math

import pytest
import torch

from tolerances import TRITON_VS_TWIN_REL_RMS, assert_close, rel_rms

pytest.importorskip("triton")

from megalodoc.kernels.cema import triton_cema  # noqa: E402
from megalodoc.kernels.cema.blocked import cema_blocked  # noqa: E402
from megalodoc.kernels.cema.triton_cema import CemaConfig, cema_triton  # noqa: E402

N = 16
D_ODD = 24  # not a power of two: the row blocks are masked


def _nan_alloc(shape, dtype, device):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Every buffer a kernel writes starts as NaN, so an element the kernel forgets shows up."""
    monkeypatch.setattr(triton_cema, "_alloc", _nan_alloc)


def make_inputs(B: int, L: int, D: int, *, seed: int, device: str = "cpu", state: bool = True) -> dict:
    """Coefficients as the model builds them (spec 2.2), with |q| from 0.5 to ~0.999 (long memory)."""
    gen = torch.Generator().manual_seed(seed)
    alpha = torch.randn(D, N, generator=gen) * 0.5
    damp = torch.rand(D, N, generator=gen) * 0.5 + 1e-3  # sigma(alpha) * sigma(delta)
    phi = torch.sigmoid(torch.randn(D, 1, generator=gen)) * 2 * math.pi / N
    angle = phi * torch.arange(1, N + 1)  # (D, N)
    p = torch.sigmoid(alpha)
    q = torch.polar(1.0 - damp, angle).to(torch.complex64)
    gamma = (torch.randn(D, N, generator=gen) + 1j * torch.randn(D, N, generator=gen)) / math.sqrt(N)
    omega = torch.randn(D, generator=gen) * 0.25
    x = torch.randn(B, L, D, generator=gen)
    h0 = torch.randn(B, D, N, 2, generator=gen)
    out = {
        "x": x,
        "p": p,
        "q": q,
        "gamma": gamma.to(torch.complex64),
        "omega": omega,
        "initial_state": torch.view_as_complex(h0) if state else None,
        "dy": torch.randn(B, L, D, generator=gen),
        "dh": torch.view_as_complex(torch.randn(B, D, N, 2, generator=gen)),
    }
    return {k: (v.to(device) if v is not None else None) for k, v in out.items()}


def run_with_grads(fn, inputs: dict, **kwargs) -> dict:
    """Forward with a final state, a backward from random cotangents; returns outputs and every .grad."""
    names = ["x", "p", "q", "gamma", "omega", "initial_state"]
    leaves = {n: inputs[n].clone().requires_grad_(True) for n in names if inputs[n] is not None}
    y, h = fn(
        leaves["x"], leaves["p"], leaves["q"], leaves["gamma"], leaves["omega"],
        initial_state=leaves.get("initial_state"), output_final_state=True, **kwargs,
    )
    loss = (y.float() * inputs["dy"]).sum() + (h * inputs["dh"].conj()).real.sum()
    loss.backward()
    out = {"y": y.detach(), "h": h.detach()}
    out.update({f"d{n}": leaf.grad for n, leaf in leaves.items()})
    return out


def assert_matches(got: dict, want: dict, rel: float = TRITON_VS_TWIN_REL_RMS, max_rel: float = 1e-4) -> None:
    """rel-RMS within the table's bound and every element within max_rel of the largest reference value."""
    assert got.keys() == want.keys()
    for name in want:
        err = rel_rms(got[name], want[name])
        assert err <= rel, f"{name}: rel-RMS {err:.2e} > {rel:.0e}"
        scale = want[name].abs().max().item()
        assert_close(got[name], want[name], atol=max_rel * scale + 1e-30, what=name)


@pytest.mark.parametrize("state", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("L", [1, 63, 64, 65])
def test_matches_blocked_twin(L: int, B: int, state: bool) -> None:
    inputs = make_inputs(B, L, D_ODD, seed=1000 * L + 10 * B + state, state=state)
    assert_matches(run_with_grads(cema_triton, inputs), run_with_grads(cema_blocked, inputs))


def test_many_segments_and_row_blocks() -> None:
    """Short segments (several carry steps) and row blocks that cut through batch rows."""
    inputs = make_inputs(3, 37, D_ODD, seed=7)  # 72 rows: blocks of 32 start inside rows b = 1 and 2
    got = run_with_grads(cema_triton, inputs, config=CemaConfig(segment_len=8, block_rows=32))
    assert_matches(got, run_with_grads(cema_blocked, inputs))


def test_per_row_initial_state_gradient() -> None:
    """B > 1 with different carried states per row: dq must use each row's own state (the reference
    CUDA kernel once used row 0's state for every row)."""
    inputs = make_inputs(3, 20, 8, seed=11)
    inputs["initial_state"] = inputs["initial_state"] * torch.tensor([1.0, -3.0, 10.0])[:, None, None]
    got, want = run_with_grads(cema_triton, inputs), run_with_grads(cema_blocked, inputs)
    assert_matches(got, want)
    # and the state's gradient really matters for dq: row 0's state alone gives a different dq
    alt = dict(inputs, initial_state=inputs["initial_state"][:1].expand(3, -1, -1).contiguous())
    assert rel_rms(run_with_grads(cema_triton, alt)["dq"], want["dq"]) > 1e-2


def test_split_run_equals_one_run() -> None:
    inputs = make_inputs(2, 65, D_ODD, seed=3)
    args = [inputs[k] for k in ("p", "q", "gamma", "omega")]
    x, h0 = inputs["x"], inputs["initial_state"]
    y_full, h_full = cema_triton(x, *args, initial_state=h0, output_final_state=True)
    y_a, h_a = cema_triton(x[:, :30], *args, initial_state=h0, output_final_state=True)
    y_b, h_b = cema_triton(x[:, 30:], *args, initial_state=h_a, output_final_state=True)
    assert_close(torch.cat([y_a, y_b], dim=1), y_full, atol=1e-5, what="split y")
    assert_close(h_b, h_full, atol=1e-5, what="split final state")


def test_no_state_requested_returns_none() -> None:
    inputs = make_inputs(1, 5, 4, seed=5)
    y, h = cema_triton(*(inputs[k] for k in ("x", "p", "q", "gamma", "omega")))
    assert h is None
    y_ref, _ = cema_blocked(*(inputs[k] for k in ("x", "p", "q", "gamma", "omega")))
    assert_close(y, y_ref, atol=1e-5, what="y")


def test_bf16_input_is_computed_in_fp32() -> None:
    """bf16 x: the kernels load it as fp32, so the result is the fp32 twin's on the same values, rounded
    once to bf16 for y and dx (within one bf16 ulp, 2^-7 relative: the interpreter truncates on store
    where a GPU rounds to nearest) and fp32-exact for the state and parameter gradients."""
    inputs = make_inputs(2, 65, D_ODD, seed=9)
    inputs["x"] = inputs["x"].to(torch.bfloat16).float()  # the values bf16 can hold
    inputs["dy"] = inputs["dy"].to(torch.bfloat16).float()  # the cotangent reaches a bf16 y rounded
    want = run_with_grads(cema_blocked, inputs)
    got = run_with_grads(cema_triton, dict(inputs, x=inputs["x"].to(torch.bfloat16)))
    assert got["y"].dtype == torch.bfloat16 and got["dx"].dtype == torch.bfloat16
    for name in ("y", "dx"):
        scale = want[name].abs().max().item()
        assert_close(got[name], want[name], atol=1e-5 * scale, rtol=2.0**-7, what=f"bf16 {name}")
    assert_matches({k: v for k, v in got.items() if k not in ("y", "dx")},
                   {k: v for k, v in want.items() if k not in ("y", "dx")})


def test_bad_shapes_are_rejected() -> None:
    inputs = make_inputs(1, 4, 8, seed=2)
    args = [inputs[k] for k in ("x", "p", "q", "gamma", "omega")]
    with pytest.raises(ValueError, match="omega"):
        cema_triton(*args[:4], torch.zeros(7))
    with pytest.raises(ValueError, match="initial_state"):
        cema_triton(*args, initial_state=torch.zeros(2, 8, N, dtype=torch.complex64))


def test_cpu_tensor_without_interpreter_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    inputs = make_inputs(1, 4, 8, seed=2)
    with pytest.raises(RuntimeError, match="CUDA"):
        cema_triton(*(inputs[k] for k in ("x", "p", "q", "gamma", "omega")))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("L", [4095, 4096, 16385])
@pytest.mark.parametrize("B", [1, 3])
def test_gpu_matches_blocked_twin(L: int, B: int) -> None:
    inputs = make_inputs(B, L, 1024, seed=L + B, device="cuda")
    assert_matches(run_with_grads(cema_triton, inputs), run_with_grads(cema_blocked, inputs), max_rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_and_split_run() -> None:
    inputs = make_inputs(2, 8192, 2048, seed=1, device="cuda")
    args = [inputs[k] for k in ("p", "q", "gamma", "omega")]
    x = inputs["x"].to(torch.bfloat16)
    y, h = cema_triton(x, *args, initial_state=inputs["initial_state"], output_final_state=True)
    y_ref, h_ref = cema_blocked(x, *args, initial_state=inputs["initial_state"], output_final_state=True)
    assert rel_rms(y, y_ref) <= TRITON_VS_TWIN_REL_RMS and rel_rms(h, h_ref) <= TRITON_VS_TWIN_REL_RMS
    y_a, h_a = cema_triton(x[:, :3000], *args, initial_state=inputs["initial_state"], output_final_state=True)
    y_b, h_b = cema_triton(x[:, 3000:], *args, initial_state=h_a, output_final_state=True)
    # The fp32 state of the split run matches the one-shot run to fp32 rounding; y is rounded once to bf16
    # from fp32 values that differ by that rounding, so an element may land one bf16 ulp (2^-7 relative)
    # away (seen on an H200: rel RMS 2.4e-5 between the two bf16 outputs).
    assert rel_rms(h_b, h) <= 1e-5
    scale = y.float().abs().max().item()
    assert_close(torch.cat([y_a, y_b], 1), y, atol=1e-5 * scale, rtol=2.0**-7, what="split bf16 y")
