"""Test-wide setup. Environment variables must be set before anything imports triton or torch.compile."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402

# One intra-op thread: the test models are tiny, and on a busy 2-core machine two spinning threads per
# process make each small op many times slower.
torch.set_num_threads(1)
