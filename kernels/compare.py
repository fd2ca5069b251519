"""How far a fast path is from its twin: one error measure for the tests and the benchmarks."""

from __future__ import annotations

import torch


def rel_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| over all elements, in float64 (complex tensors compared as
    their real and imaginary parts)."""
    a = torch.view_as_real(actual.detach()) if actual.is_complex() else actual.detach()
    e = torch.view_as_real(expected.detach()) if expected.is_complex() else expected.detach()
    a, e = a.double(), e.double()
    return ((a - e).norm() / e.norm().clamp_min(1e-30)).item()
