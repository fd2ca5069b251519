"""`spread_cema_memory`: the long-memory start for half of each channel's CEMA modes (a training option)."""

from __future__ import annotations

import math

import pytest
import torch

from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.cema import ComplexEMA
from megalodoc.model.init import spread_cema_memory


def _half_lives(cema: ComplexEMA) -> torch.Tensor:
    """(D, N) tokens after which |q|^t = 1/2."""
    _, q, _ = cema.coefficients()
    return (math.log(0.5) / torch.log(q.abs().double())).detach()


def _model(ndim: int = 8) -> Megalodon:
    torch.manual_seed(0)
    return Megalodon(MegalodonConfig.preset("tiny", cema_ndim=ndim))


def test_slow_half_of_the_modes_gets_the_geometric_ladder_and_the_rest_is_untouched() -> None:
    model = _model(ndim=8)
    before = {n: (m.alpha.detach().clone(), m.delta.detach().clone(), _half_lives(m))
              for n, m in model.named_modules() if isinstance(m, ComplexEMA)}
    assert all(float(h.max()) < 6 for _, _, h in before.values())  # the paper's init: a few tokens at most
    spread_cema_memory(model, max_half_life=1024.0, min_half_life=8.0)
    ladder = 1024.0 * (8.0 / 1024.0) ** torch.linspace(0, 1, 4, dtype=torch.float64)  # 1024, 203, 40.3, 8
    for name, module in model.named_modules():
        if not isinstance(module, ComplexEMA):
            continue
        alpha, delta, old = before[name]
        now = _half_lives(module)
        assert torch.allclose(now[:, :4], ladder.expand(now.shape[0], 4), rtol=1e-3), name  # fp32 coefficients
        assert torch.equal(module.alpha[:, 4:], alpha[:, 4:]) and torch.equal(now[:, 4:], old[:, 4:]), name
        assert torch.equal(module.delta, delta), name


def test_long_modes_carry_an_impulse_across_a_chunk_boundary() -> None:
    """An impulse read in chunk 0 still moves the CEMA output many chunks later only with the spread start."""
    outputs = {}
    for spread in (False, True):
        model = _model(ndim=8)
        if spread:
            spread_cema_memory(model, max_half_life=2048.0)
        cema = model.layers[0].mega.cema
        D, L = cema.dim, 256
        x = torch.zeros(1, L, D)  # (B, L, D)
        base, _ = cema(x, None)
        x[0, 0] = 1.0
        hit, _ = cema(x, None)
        outputs[spread] = (hit - base)[0, -1].abs().max().item()  # effect at t = L-1 of the impulse at t = 0
    assert outputs[False] < 1e-5  # fp32 round-off only
    assert outputs[True] > 1e-4


def test_rejects_half_lives_that_are_not_increasing_memories() -> None:
    with pytest.raises(ValueError, match="half-lives"):
        spread_cema_memory(_model(), max_half_life=4.0, min_half_life=8.0)
    with pytest.raises(ValueError, match="half-lives"):
        spread_cema_memory(_model(), max_half_life=64.0, min_half_life=1.0)
