"""Autocast switched off where an op chooses its own precisions.

The PyTorch twins compute CEMA in fp32/complex64 and the norm statistics in float64 on purpose, and the
hand-written backwards work in the dtypes their forwards saved. Under autocast their matrix products
would run in bf16 instead: a bf16 result cannot be viewed as complex, and a backward would meet operands
whose dtypes no longer match (autocast applies to backward ops run inside its context too).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context with autocast off for device_type ("cpu", "cuda"); a no-op when it is not on."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def without_autocast(fn: F) -> F:
    """Runs fn(x, ...) with autocast off for x's device; x is its first argument, a tensor."""

    @functools.wraps(fn)
    def wrapper(x: torch.Tensor, *args, **kwargs):
        with autocast_off(x.device.type):
            return fn(x, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def backward_without_autocast(backward: F) -> F:
    """Runs a custom autograd Function's backward(ctx, *grads) with autocast off for the gradients' device."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        device = next((g.device.type for g in grads if isinstance(g, torch.Tensor)), "cpu")
        with autocast_off(device):
            return backward(ctx, *grads)

    return wrapper  # type: ignore[return-value]
