"""Test-wide setup. Environment variables must be set before anything imports triton or torch.compile."""

import os

# Triton runs interpreted on the CPU, except for `python3 -m pytest -m gpu tests/kernels` on a CUDA machine
# (see pytest_configure): the GPU tests need the compiled kernels.
_INTERPRET_CHOSEN_BY_USER = "TRITON_INTERPRET" in os.environ
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

# One intra-op thread: the test models are tiny, and on a busy 2-core machine two spinning threads per
# process make each small op many times slower.
torch.set_num_threads(1)


def pytest_configure(config) -> None:
    """Only the gpu-marked tests selected, on a machine with CUDA: compile the Triton kernels instead of
    interpreting them (test modules import triton after this hook, at collection)."""
    selects_gpu_only = (config.getoption("markexpr", "") or "").strip() == "gpu"
    if selects_gpu_only and not _INTERPRET_CHOSEN_BY_USER and torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "0"
