"""Call-boundary states plus tail ids: folding a text to its last call boundary and restoring from it, every
reading cut into model calls on one absolute grid (multiples of CALL_CHUNKS chunks)."""

import pytest
import torch
from state_helpers import assert_same_state, run_chunked

from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.boundary import (
    CALL_CHUNKS,
    boundary_state_nbytes,
    call_span,
    fold_to_boundary,
    restore_with_tail,
    run_aligned,
)

C = 16  # the tiny preset's chunk size
S = CALL_CHUNKS * C  # tokens between two call boundaries


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


def test_call_span_is_call_chunks_chunks(tiny):
    assert CALL_CHUNKS > 1 and call_span(tiny.config) == S


@pytest.mark.parametrize("first,second", [(0, 5), (0, C), (0, S), (5, 2 * C + 3), (3 * C, C - 1), (C + 7, 4 * C),
                                          (S - 1, 2), (S + C, 2 * S + 5)])
def test_fold_then_restore_equals_uninterrupted_run(tiny, first, second):
    ids = ids_of(first + second, seed=first + second)
    state, tail = fold_to_boundary(tiny, None, ids[:first])
    assert state.position % S == 0 and len(tail) < S and state.position + len(tail) == first
    state, tail = fold_to_boundary(tiny, state, tail + ids[first:])  # a second turn continues from the pair
    assert state.position % S == 0 and len(tail) < S and state.position + len(tail) == first + second
    assert state.position == (first + second) // S * S
    assert tail == ids[state.position :]
    assert state.nbytes() == boundary_state_nbytes(tiny.config)
    restored = restore_with_tail(tiny, state, tail)
    assert_same_state(restored, run_chunked(tiny, ids, S))  # calls of S tokens from the start: the grid


def test_fold_without_crossing_a_call_boundary_keeps_the_state(tiny):
    state, _ = fold_to_boundary(tiny, None, ids_of(S))
    same, tail = fold_to_boundary(tiny, state, torch.tensor(ids_of(S - 1, seed=3)))  # past chunk boundaries
    assert same is state and tail == ids_of(S - 1, seed=3)


def test_reading_makes_one_model_call_per_call_span(tiny):
    """The speed of the design: whole spans are read in single calls of CALL_CHUNKS chunks."""
    lengths = []
    hook = tiny.register_forward_pre_hook(lambda _, args: lengths.append(args[0].shape[1]))
    try:
        run_aligned(tiny, None, ids_of(2 * S + 5))
        start = run_chunked(tiny, ids_of(C + 3), C)
        lengths.clear()
        run_aligned(tiny, start, ids_of(2 * S, seed=1))
    finally:
        hook.remove()
    assert lengths == [S - C - 3, S, C + 3]


def test_a_legacy_chunk_boundary_state_reads_up_to_the_next_call_boundary(tiny):
    """A state stored at a chunk boundary that is not a call boundary (one chunk per call, older stores)
    is accepted: the first call ends at the next call boundary, later calls are whole spans."""
    ids = ids_of(2 * S + 5, seed=4)
    legacy = run_chunked(tiny, ids[: 2 * C], C)
    assert legacy.at_chunk_boundary and legacy.position % S != 0
    kept, tail = fold_to_boundary(tiny, legacy, ids[2 * C : S - 1])
    assert kept is legacy and tail == ids[2 * C : S - 1]
    state, tail = fold_to_boundary(tiny, legacy, ids[2 * C :])
    assert state.position == 2 * S and tail == ids[2 * S :]
    expected = legacy
    with torch.no_grad():
        for start, end in [(2 * C, S), (S, 2 * S)]:
            _, expected = tiny(torch.tensor([ids[start:end]]), expected, compute_logits=False)
    assert_same_state(state, expected)


def test_fold_refuses_a_mid_chunk_state(tiny):
    mid = run_chunked(tiny, ids_of(C + 3), C)
    with pytest.raises(ValueError, match="3 tokens into a chunk"):
        fold_to_boundary(tiny, mid, ids_of(C))


def test_run_aligned_from_a_mid_chunk_state_finishes_the_call_first(tiny):
    """From a mid-chunk state the first call ends at the next call boundary; later calls are whole spans."""
    ids = ids_of(2 * S + 2, seed=9)
    mid = run_chunked(tiny, ids[: C + 3], C)
    expected = mid
    with torch.no_grad():
        for start, end in [(C + 3, S), (S, 2 * S), (2 * S, 2 * S + 2)]:
            _, expected = tiny(torch.tensor([ids[start:end]]), expected, compute_logits=False)
    assert_same_state(run_aligned(tiny, mid, ids[C + 3 :]), expected)
