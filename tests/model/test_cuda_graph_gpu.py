"""GraphedStream on a GPU: replayed graphs give the eager model's state bit for bit, fall back where a
graph would not be exact, and drop their graphs when a parameter changes."""

from __future__ import annotations

import pytest
import torch

from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.cuda_graph import GraphedStream

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def states_equal(a, b) -> None:
    assert a.position == b.position
    fa, fb = a.to_flat(), b.to_flat()
    assert fa.keys() == fb.keys()
    for name in fa:
        assert torch.equal(fa[name], fb[name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_replays_equal_eager_streaming(dtype):
    torch.manual_seed(0)
    cfg = MegalodonConfig.preset("tiny")
    model = Megalodon(cfg).cuda().to(dtype).eval()
    C = cfg.chunk_size
    ids = torch.randint(4, cfg.vocab_size, (1, 12 * C + 3), device="cuda")
    stream = GraphedStream(model)
    with torch.no_grad():
        eager = graphed = None
        for start, length in ((0, C), (C, C), (2 * C, 2 * C), (4 * C, C), (5 * C, 2 * C), (7 * C, 5 * C + 3)):
            piece = ids[:, start : start + length]
            _, eager = model(piece, eager, compute_logits=False)
            graphed = stream(piece, graphed)
            states_equal(graphed, eager)
    assert len(stream._graphs) == 2  # calls of one and of two chunks; the first and the ragged one ran eagerly


def test_a_parameter_change_recaptures():
    torch.manual_seed(1)
    cfg = MegalodonConfig.preset("tiny")
    model = Megalodon(cfg).cuda().eval()
    C = cfg.chunk_size
    ids = torch.randint(4, cfg.vocab_size, (1, 3 * C), device="cuda")
    stream = GraphedStream(model)
    with torch.no_grad():
        _, start = model(ids[:, :C], compute_logits=False)
        stream(ids[:, C : 2 * C], start)
        model.layers[0].mega.cema.alpha.add_(0.1)  # cached CEMA coefficients and the graph are now stale
        _, want = model(ids[:, C : 2 * C], start, compute_logits=False)
        states_equal(stream(ids[:, C : 2 * C], start), want)
