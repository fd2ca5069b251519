"""One entry point per op, choosing the implementation by device, overridable by MEGALODOC_BACKEND.

Backends: "triton" (CUDA tensors, needs triton), "torch" (the PyTorch twins: the CPU path), "naive"
(float64 loops: the oracle, slow). Default: triton for CUDA tensors (TRITON_IS_CUDA_DEFAULT, set after
the GPU tests `python3 -m pytest -m gpu tests/kernels` passed on a GPU; kernels/NOTES.md records where),
torch otherwise. MEGALODOC_BACKEND=torch keeps the twins on CUDA.
Every stateful op has the same contract:
    op(inputs..., *, initial_state=None, output_final_state=False) -> (out, final_state | None)
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

import torch

from megalodoc.kernels.cema.blocked import cema_blocked
from megalodoc.kernels.cema.naive import cema_naive
from megalodoc.kernels.timestep_norm.cumulative import NormStats, timestep_norm_cumulative
from megalodoc.kernels.timestep_norm.naive import timestep_norm_naive

BACKENDS = ("torch", "triton", "naive")
# Whether CUDA tensors use the Triton kernels without MEGALODOC_BACKEND=triton. True since the `gpu`-marked
# tests of tests/kernels (kernels and the whole model against the twins) passed on an H200 (kernels/NOTES.md).
TRITON_IS_CUDA_DEFAULT = True
# module path and function name of each op's Triton implementation, imported only when used
_TRITON_IMPLS = {
    "cema": ("megalodoc.kernels.cema.triton_cema", "cema_triton"),
    "timestep_norm": ("megalodoc.kernels.timestep_norm.triton_tsn", "timestep_norm_triton"),
}
_TWINS: dict[str, dict[str, Callable]] = {
    "cema": {"torch": cema_blocked, "naive": cema_naive},
    "timestep_norm": {"torch": timestep_norm_cumulative, "naive": timestep_norm_naive},
}


@functools.cache
def triton_available() -> bool:
    """True when triton imports (it is optional: the CPU path never needs it)."""
    try:
        importlib.import_module("triton")
    except Exception:
        return False
    return True


def _triton_impl(op: str) -> Callable:
    module_name, fn_name = _TRITON_IMPLS[op]
    return getattr(importlib.import_module(module_name), fn_name)


def choose_backend(x: torch.Tensor) -> str:
    """The backend for an input tensor: MEGALODOC_BACKEND if set, else triton on CUDA when
    TRITON_IS_CUDA_DEFAULT, else torch."""
    forced = os.environ.get("MEGALODOC_BACKEND", "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"MEGALODOC_BACKEND={forced!r} is not one of {', '.join(BACKENDS)}")
        if forced == "triton" and not triton_available():
            raise RuntimeError("MEGALODOC_BACKEND=triton but triton is not installed (pip install triton)")
        return forced
    return "triton" if TRITON_IS_CUDA_DEFAULT and x.is_cuda and triton_available() else "torch"


def _impl(op: str, x: torch.Tensor) -> Callable:
    backend = choose_backend(x)
    return _triton_impl(op) if backend == "triton" else _TWINS[op][backend]


def cema(
    x: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    gamma: torch.Tensor,
    omega: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Complex EMA with omega skip. x (B, L, D); p (D, N) real; q, gamma (D, N) complex (gamma already
    divided by sqrt(N)); omega (D,); initial_state (B, D, N) complex. Returns y (B, L, D) in x's dtype and
    the final state (B, D, N) complex if asked."""
    return _impl("cema", x)(
        x, p, q, gamma, omega, initial_state=initial_state, output_final_state=output_final_state
    )


def timestep_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    num_groups: int,
    eps: float = 1e-5,
    initial_state: NormStats | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, NormStats | None]:
    """Causal cumulative group normalization (paper Eq. 4). x (B, L, D); weight, bias (D,) with the scale
    applied as (weight + 1); state (count (B,) int64, mean (B, G), var (B, G)) in fp32."""
    return _impl("timestep_norm", x)(
        x,
        weight,
        bias,
        num_groups=num_groups,
        eps=eps,
        initial_state=initial_state,
        output_final_state=output_final_state,
    )
