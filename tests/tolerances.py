"""One table of tolerances for the whole suite, and named comparison helpers that print the diff."""

import torch

from megalodoc.kernels.compare import rel_rms as rel_rms  # the one definition, shared with bench/

# CPU twins vs the float64 naive oracle, computed in fp32.
TWIN_VS_NAIVE_FP32 = 1e-5
# Triton kernels vs their PyTorch twin: relative RMS error (fp32).
TRITON_VS_TWIN_REL_RMS = 5e-3
# Streamed vs one-shot logits, fp32 on CPU.
STREAM_VS_ONESHOT_LOGITS = 1e-4
# The written-out decoding step vs the modules, fp32: the same products, only a few sums in another order.
DECODE_STEP_VS_MODULES_FP32 = 1e-5
# float64 comparisons between two exact formulations of the same quantity.
FLOAT64_EXACT = 1e-10


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, what: str, rtol: float = 0.0) -> None:
    """Assert |actual - expected| <= atol + rtol*|expected| elementwise, naming the quantity and the worst diff."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = actual.detach().to(torch.complex128 if actual.is_complex() else torch.float64)
    e = expected.detach().to(a.dtype)
    assert not torch.isnan(a).any(), f"{what}: NaN in result"
    diff = (a - e).abs()
    bound = atol + rtol * e.abs()
    worst = (diff - bound).max().item() if diff.numel() else 0.0
    assert worst <= 0, f"{what}: max |diff| {diff.max().item():.3e} exceeds atol {atol:.1e} (rtol {rtol:.1e})"
