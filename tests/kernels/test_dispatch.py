"""The backend dispatcher: MEGALODOC_BACKEND picks the implementation, bad values are refused clearly,
the Triton path agrees with the twin through the public entry points, and importing the kernels package
works where triton cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from megalodoc.kernels import dispatch
from megalodoc.kernels.cema.blocked import cema_blocked
from megalodoc.kernels.cema.naive import cema_naive
from megalodoc.kernels.timestep_norm.cumulative import timestep_norm_cumulative
from megalodoc.kernels.timestep_norm.naive import timestep_norm_naive

from tolerances import assert_close


def _x() -> torch.Tensor:
    return torch.randn(2, 5, 8)


@pytest.mark.parametrize(
    ("backend", "cema_fn", "tsn_fn"),
    [("torch", cema_blocked, timestep_norm_cumulative), ("naive", cema_naive, timestep_norm_naive)],
)
def test_env_selects_twin(monkeypatch, backend, cema_fn, tsn_fn) -> None:
    monkeypatch.setenv("MEGALODOC_BACKEND", backend)
    assert dispatch.choose_backend(_x()) == backend
    assert dispatch._impl("cema", _x()) is cema_fn
    assert dispatch._impl("timestep_norm", _x()) is tsn_fn


def test_env_selects_triton(monkeypatch) -> None:
    pytest.importorskip("triton")
    from megalodoc.kernels.cema.triton_cema import cema_triton
    from megalodoc.kernels.timestep_norm.triton_tsn import timestep_norm_triton

    monkeypatch.setenv("MEGALODOC_BACKEND", " Triton ")  # case and spaces are forgiven
    assert dispatch._impl("cema", _x()) is cema_triton
    assert dispatch._impl("timestep_norm", _x()) is timestep_norm_triton


def test_default_is_torch_on_cpu(monkeypatch) -> None:
    monkeypatch.delenv("MEGALODOC_BACKEND", raising=False)
    assert dispatch.choose_backend(_x()) == "torch"
    assert dispatch._impl("cema", _x()) is cema_blocked


def test_unknown_backend_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("MEGALODOC_BACKEND", "cuda")
    with pytest.raises(ValueError, match=r"MEGALODOC_BACKEND='cuda' is not one of torch, triton, naive"):
        dispatch.cema(
            _x(), torch.zeros(8, 4), torch.zeros(8, 4, dtype=torch.complex64),
            torch.zeros(8, 4, dtype=torch.complex64), torch.zeros(8),
        )


def test_triton_through_dispatch_matches_torch(monkeypatch) -> None:
    """Both ops through the public dispatcher entry points, triton (interpreted) vs torch, with state."""
    pytest.importorskip("triton")
    gen = torch.Generator().manual_seed(0)
    B, L, D, N, G = 2, 9, 8, 4, 2
    x = torch.randn(B, L, D, generator=gen)
    p = torch.rand(D, N, generator=gen)
    q = torch.polar(torch.rand(D, N, generator=gen) * 0.5 + 0.4, torch.rand(D, N, generator=gen) * 3)
    gamma = torch.randn(D, N, 2, generator=gen)
    cema_args = (x, p, q.to(torch.complex64), torch.view_as_complex(gamma), torch.randn(D, generator=gen))
    h0 = torch.view_as_complex(torch.randn(B, D, N, 2, generator=gen))
    norm_state = (torch.tensor([0, 4]), torch.randn(B, G, generator=gen), torch.rand(B, G, generator=gen) + 0.5)
    w, b = torch.randn(D, generator=gen) * 0.1, torch.randn(D, generator=gen) * 0.1
    results = {}
    for backend in ("torch", "triton"):
        monkeypatch.setenv("MEGALODOC_BACKEND", backend)
        y, h = dispatch.cema(*cema_args, initial_state=h0, output_final_state=True)
        z, s = dispatch.timestep_norm(x, w, b, num_groups=G, initial_state=norm_state, output_final_state=True)
        results[backend] = (y, h, z, *s)
    names = ("y", "h", "z", "count", "mean", "var")
    for name, got, want in zip(names, results["triton"], results["torch"], strict=True):
        assert_close(got, want, atol=1e-5, what=name)


_NO_TRITON = textwrap.dedent(
    """
    import sys
    sys.modules["triton"] = None  # any `import triton` now raises ImportError
    import os
    import torch
    import megalodoc.kernels
    import megalodoc.kernels.cema
    import megalodoc.kernels.timestep_norm
    from megalodoc.kernels import dispatch
    assert not dispatch.triton_available()
    x = torch.randn(1, 3, 4)
    y, _ = dispatch.cema(x, torch.rand(4, 2), torch.full((4, 2), 0.5 + 0j), torch.ones(4, 2, dtype=torch.complex64),
                         torch.zeros(4))
    z, _ = dispatch.timestep_norm(x, torch.zeros(4), torch.zeros(4), num_groups=2)
    assert y.shape == z.shape == x.shape
    os.environ["MEGALODOC_BACKEND"] = "triton"
    try:
        dispatch.cema(x, torch.rand(4, 2), torch.full((4, 2), 0.5 + 0j), torch.ones(4, 2, dtype=torch.complex64),
                      torch.zeros(4))
    except RuntimeError as e:
        assert "triton is not installed" in str(e), e
    else:
        raise AssertionError("MEGALODOC_BACKEND=triton without triton must fail")
    print("ok")
    """
)


def test_import_and_cpu_path_work_without_triton() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MEGALODOC_BACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", _NO_TRITON], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_cuda_backend_follows_the_flag_and_the_override(monkeypatch) -> None:
    """CUDA tensors get Triton when TRITON_IS_CUDA_DEFAULT (set once the GPU tests passed), the twin when
    it is False; MEGALODOC_BACKEND overrides either way."""

    class FakeCuda:  # choose_backend only looks at .is_cuda
        is_cuda = True

    monkeypatch.setattr(dispatch, "triton_available", lambda: True)
    for flag, env, expect in [(False, None, "torch"), (True, None, "triton"), (True, "torch", "torch"),
                              (False, "triton", "triton")]:
        monkeypatch.setattr(dispatch, "TRITON_IS_CUDA_DEFAULT", flag)
        if env is None:
            monkeypatch.delenv("MEGALODOC_BACKEND", raising=False)
        else:
            monkeypatch.setenv("MEGALODOC_BACKEND", env)
        assert dispatch.choose_backend(FakeCuda()) == expect, (flag, env)
