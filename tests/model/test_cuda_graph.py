"""GraphedStream on the CPU: every call is ineligible for a graph and must equal the eager model."""

from __future__ import annotations

import torch

from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.cuda_graph import GraphedStream


def test_cpu_calls_run_eagerly_and_equal_the_model():
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny")).eval()
    C = model.config.chunk_size
    ids = torch.randint(4, model.config.vocab_size, (2, 3 * C + 5))
    stream = GraphedStream(model)
    with torch.no_grad():
        state = stream(ids[:, :C], None)
        assert not stream.eligible(ids[:, C : 2 * C], state)  # CPU
        state = stream(ids[:, C:], state)
        _, want = model(ids[:, :C], compute_logits=False)
        _, want = model(ids[:, C:], want, compute_logits=False)
    assert state.position == want.position
    for name, tensor in want.to_flat().items():
        torch.testing.assert_close(state.to_flat()[name], tensor, rtol=0, atol=0, msg=name)
