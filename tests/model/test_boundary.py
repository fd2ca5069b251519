"""Boundary states plus tail ids: folding a text to its last chunk boundary and restoring from it."""

import pytest
import torch
from state_helpers import assert_same_state, run_chunked

from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.boundary import boundary_state_nbytes, fold_to_boundary, restore_with_tail, run_aligned

C = 16  # the tiny preset's chunk size


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny")).eval()
    assert model.config.chunk_size == C
    return model


def ids_of(n, seed=0):
    return torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_boundary_size_is_the_config_formula_and_smaller_than_mid_chunk(tiny):
    config = tiny.config
    expected = boundary_state_nbytes(config)
    assert tiny.initial_state(1).nbytes() == expected
    at_boundary = run_chunked(tiny, ids_of(2 * C), C)
    mid_chunk = run_chunked(tiny, ids_of(2 * C + 5), C)
    assert at_boundary.at_chunk_boundary and at_boundary.nbytes() == expected
    assert not mid_chunk.at_chunk_boundary
    kv = 5 * config.num_layers * config.num_heads * (config.head_dim + config.value_head_dim) * 4
    assert mid_chunk.nbytes() == expected + kv
    assert boundary_state_nbytes(config, batch_size=3) == tiny.initial_state(3).nbytes()


@pytest.mark.parametrize("first,second", [(0, 5), (0, C), (5, 2 * C + 3), (3 * C, C - 1), (C + 7, 4 * C)])
def test_fold_then_restore_equals_uninterrupted_run(tiny, first, second):
    ids = ids_of(first + second, seed=first + second)
    state, tail = fold_to_boundary(tiny, None, ids[:first])
    assert state.at_chunk_boundary and len(tail) < C and state.position + len(tail) == first
    state, tail = fold_to_boundary(tiny, state, tail + ids[first:])  # a second turn continues from the pair
    assert state.at_chunk_boundary and len(tail) < C and state.position + len(tail) == first + second
    assert state.position == (first + second) // C * C
    assert tail == ids[state.position :]
    assert state.nbytes() == boundary_state_nbytes(tiny.config)
    restored = restore_with_tail(tiny, state, tail)
    assert_same_state(restored, run_chunked(tiny, ids, C))


def test_fold_without_crossing_a_boundary_keeps_the_state(tiny):
    state, _ = fold_to_boundary(tiny, None, ids_of(C))
    same, tail = fold_to_boundary(tiny, state, torch.tensor(ids_of(C - 1, seed=3)))
    assert same is state and tail == ids_of(C - 1, seed=3)


def test_fold_refuses_a_mid_chunk_state(tiny):
    mid = run_chunked(tiny, ids_of(C + 3), C)
    with pytest.raises(ValueError, match="3 tokens into a chunk"):
        fold_to_boundary(tiny, mid, ids_of(C))


def test_run_aligned_from_a_mid_chunk_state_finishes_the_chunk_first(tiny):
    """From a mid-chunk state the first piece only completes the chunk; later pieces are whole chunks."""
    ids = ids_of(3 * C + 2, seed=9)
    mid = run_chunked(tiny, ids[: C + 3], C)
    expected = mid
    with torch.no_grad():
        for start, end in [(C + 3, 2 * C), (2 * C, 3 * C), (3 * C, 3 * C + 2)]:
            _, expected = tiny(torch.tensor([ids[start:end]]), expected, compute_logits=False)
    assert_same_state(run_aligned(tiny, mid, ids[C + 3 :]), expected)
