"""Argument types for the commands' whole-number and device options: a value outside its range, or a
device torch cannot compute on, is refused while the arguments are parsed, before anything is opened
or loaded."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `minimum` to `maximum` (no upper limit when None)."""
    span = f"{minimum} or more" if maximum is None else f"{minimum} to {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {span}: {text!r}")
        return value

    return parse


def torch_device(text: str) -> str:
    """An argparse type: a torch device this machine can compute on (`cpu`, `cuda`, `cuda:1`, `mps`)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cpu":
        return text
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA device (torch {torch.__version__} sees none)")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: there are {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return text
    if device.type == "mps" and torch.backends.mps.is_available():
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: not a device to compute on here (cpu or an available GPU)")
