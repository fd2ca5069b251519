"""The cache of blocked-CEMA matrices (kernels/cema/block_matrices.py) is shared by every thread that runs
one model. Two threads evicting from a full cache at once picked the same oldest block size and both
popped it: the second one's KeyError ended a reading. The test stops one thread at the exact
instruction that pops (its choice made) while the other evicts, which the old code let happen."""

from __future__ import annotations

import dis
import inspect
import sys
import threading

import torch

from megalodoc.kernels.cema import block_matrices as bm

WAIT = 30.0


def coefficients(D: int = 3, N: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    p = torch.rand(D, N, generator=generator)
    q = torch.polar(torch.rand(D, N, generator=generator) * 0.9, torch.rand(D, N, generator=generator))
    gamma = torch.complex(torch.randn(D, N, generator=generator), torch.randn(D, N, generator=generator))
    return p, q, gamma


def eviction_call_offset() -> tuple[object, int]:
    """(code of cached_block_matrices, offset of the instruction calling `pop` on the eviction line)."""
    function = bm.cached_block_matrices
    code = function.__code__
    source, first = inspect.getsourcelines(function)
    [line] = [first + i for i, text in enumerate(source) if ".pop(next(iter(" in text]
    calls = [ins.offset for ins in dis.get_instructions(code)
             if ins.positions.lineno == line and ins.opname in ("CALL", "CALL_FUNCTION", "CALL_METHOD")]
    return code, calls[-1]  # the outer call: pop, its argument already chosen


def test_two_threads_evicting_from_a_full_cache_at_once_both_finish():
    p, q, gamma = coefficients()
    for T in range(1, bm._CACHED_BLOCKS + 1):  # fill the cache for this q
        bm.cached_block_matrices(p, q, gamma, T)
    code, offset = eviction_call_offset()
    at_pop, go_on = threading.Event(), threading.Event()

    def pause_at_pop(frame, event, arg):
        if frame.f_code is not code:
            return None
        frame.f_trace_opcodes = True
        if event == "opcode" and frame.f_lasti == offset and not at_pop.is_set():
            at_pop.set()
            go_on.wait(WAIT)
        return pause_at_pop

    errors: list[BaseException] = []

    def run(T: int, traced: bool) -> None:
        if traced:
            sys.settrace(pause_at_pop)
        try:
            expected = bm.block_matrices(p, q, gamma, T)
            got = bm.cached_block_matrices(p, q, gamma, T)
            assert torch.equal(got.out, expected.out) and torch.equal(got.step, expected.step)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            sys.settrace(None)

    first = threading.Thread(target=run, args=(bm._CACHED_BLOCKS + 1, True))
    first.start()
    assert at_pop.wait(WAIT), "the first thread never reached the eviction"
    second = threading.Thread(target=run, args=(bm._CACHED_BLOCKS + 2, False))
    second.start()
    second.join(2.0)  # evicts now unless the first thread's eviction holds it back
    go_on.set()
    first.join(WAIT)
    second.join(WAIT)
    assert not first.is_alive() and not second.is_alive()
    assert errors == [], errors
    cached = bm._CACHE[q]
    assert len(cached) == bm._CACHED_BLOCKS
    assert {bm._CACHED_BLOCKS + 1, bm._CACHED_BLOCKS + 2} <= set(cached)
