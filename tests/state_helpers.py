"""Shared checks of model states: the reference chunked run and bit-for-bit state equality."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def run_chunked(model, ids: Sequence[int], chunk_size: int):  # noqa: ANN001, ANN201 (test helper)
    """The model over `ids` in aligned chunks from the start, as ingest reads a document: the reference an
    uninterrupted run gives (None for no ids)."""
    state = None
    with torch.no_grad():
        for start in range(0, len(ids), chunk_size):
            piece = torch.tensor([list(ids[start : start + chunk_size])])  # (1, <= C)
            _, state = model(piece, state, compute_logits=False)
    return state


def assert_same_state(a, b) -> None:  # noqa: ANN001
    """Every tensor of two states equal bit for bit, with the same names and dtypes."""
    fa, fb = a.to_flat(), b.to_flat()
    assert fa.keys() == fb.keys()
    for key in fa:
        assert fa[key].dtype == fb[key].dtype and torch.equal(fa[key], fb[key]), key
