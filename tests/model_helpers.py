"""Shared builders and checks for model tests: random CEMA coefficients, small configs, state comparison."""

from __future__ import annotations

import dataclasses

import torch

from megalodoc.model import MegalodonConfig

from tolerances import assert_close


def random_cema_coefficients(D: int, N: int, dtype: torch.dtype = torch.float64, seed: int = 0):
    """p (D, N), q (D, N) with |q| in (0.5, 1) (long memory included), gamma (D, N), omega (D,)."""
    g = torch.Generator().manual_seed(seed)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    p = torch.rand(D, N, generator=g, dtype=dtype)
    mag = 1 - 0.5 * torch.rand(D, N, generator=g, dtype=dtype) ** 2
    angle = torch.rand(D, 1, generator=g, dtype=dtype) * torch.arange(1, N + 1, dtype=dtype) * 0.4
    q = torch.polar(mag, angle).to(cdtype)
    gamma = torch.complex(torch.randn(D, N, generator=g, dtype=dtype), torch.randn(D, N, generator=g, dtype=dtype))
    omega = torch.randn(D, generator=g, dtype=dtype)
    return p, q, gamma.to(cdtype) / N**0.5, omega


def micro_config(**overrides) -> MegalodonConfig:
    """A model small enough for float64 gradient checks (chunk 4, so short inputs span chunks)."""
    base = MegalodonConfig(
        vocab_size=16, num_layers=2, model_dim=8, z_dim=4, value_dim=8, num_heads=2, ffn_hidden_dim=8,
        cema_ndim=2, chunk_size=4, norm_num_groups=2, swiglu=True,
    )
    return dataclasses.replace(base, **overrides)


def assert_states_close(a, b, atol, what):  # noqa: ANN001 (test helper)
    """Every tensor of two model states within atol (the norm counts equal), naming the first that differs."""
    assert a.position == b.position, f"{what}: position {a.position} != {b.position}"
    for i, (la, lb) in enumerate(zip(a.layers, b.layers, strict=True)):
        assert_close(la.ema, lb.ema, atol, f"{what}: layers.{i}.ema")
        assert torch.equal(la.norm.count, lb.norm.count), f"{what}: layers.{i}.norm.count"
        assert_close(la.norm.mean, lb.norm.mean, atol, f"{what}: layers.{i}.norm.mean")
        assert_close(la.norm.var, lb.norm.var, atol, f"{what}: layers.{i}.norm.var")
        assert_close(la.keys, lb.keys, atol, f"{what}: layers.{i}.keys")
        assert_close(la.values, lb.values, atol, f"{what}: layers.{i}.values")
    assert torch.equal(a.final_norm.count, b.final_norm.count), f"{what}: final_norm.count"
    assert_close(a.final_norm.mean, b.final_norm.mean, atol, f"{what}: final_norm.mean")
    assert_close(a.final_norm.var, b.final_norm.var, atol, f"{what}: final_norm.var")
