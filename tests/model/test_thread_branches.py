"""One shared model, two threads continuing the same mid-chunk state at once (the web app serves several
people from one loaded model): every continuation equals the same calls made one after the other, and
the shared state stays unchanged.

The threads are lined up where a race would hurt: each one pauses at its first tensor write (the token
appended to the chunk buffer) until the other has reached its own, so both have decided where to write
before either writes. Without that rendezvous the two calls overlap there only now and then."""

from __future__ import annotations

import threading

import pytest
import torch
from torch.overrides import TorchFunctionMode

from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.attention import chunked_attention
from megalodoc.model.rotary import Rotary

RENDEZVOUS_TIMEOUT_S = 20.0  # a thread that never reaches its write (e.g. a lock held across it) fails, not hangs


class PauseAtFirstWrite(TorchFunctionMode):
    """Within this thread (torch function modes are per thread), waits at `barrier` before the first
    in-place tensor write (`t[...] = x`), then lets every operation through."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier, self.paused = barrier, False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__setitem__ and not self.paused:
            self.paused = True
            self.barrier.wait(RENDEZVOUS_TIMEOUT_S)
        return func(*args, **(kwargs or {}))


def run_lined_up(work, names: str) -> dict:
    """work(name) in one thread per name, each under PauseAtFirstWrite with one shared barrier; returns
    {name: result}. Grad modes are per thread too, so work enters its own."""
    barrier, out, errors = threading.Barrier(len(names)), {}, []

    def target(name: str) -> None:
        try:
            with PauseAtFirstWrite(barrier):
                out[name] = work(name)
        except BaseException as error:  # noqa: BLE001 - raised again in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=target, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return out


def test_two_threads_appending_to_one_chunk_cache_each_get_their_own_slot():
    """chunked_attention appends a decoded token into the chunk buffer that the cache views: two threads
    continuing the same cache must not both write the slot after it."""
    torch.manual_seed(0)
    C, H, DZ, DV = 16, 2, 8, 12
    rotary = Rotary(DZ, 10000.0)
    q, k, v = torch.randn(1, 5, H, DZ), torch.randn(1, 5, H, DZ), torch.randn(1, 5, H, DV)
    new = {name: (torch.randn(1, 1, H, DZ), torch.randn(1, 1, H, DZ), torch.randn(1, 1, H, DV)) for name in "ab"}
    empty = (torch.zeros(1, 0, H, DZ), torch.zeros(1, 0, H, DV))

    def start() -> list[torch.Tensor]:
        return chunked_attention(q, k, v, *empty, chunk_size=C, rotary=rotary)[1:]

    def append(cache: list[torch.Tensor], name: str, barrier: threading.Barrier | None = None) -> list[torch.Tensor]:
        with torch.no_grad():
            out = chunked_attention(*new[name], *cache, chunk_size=C, rotary=rotary)
            if barrier is not None:
                barrier.wait(RENDEZVOUS_TIMEOUT_S)  # both have appended before either reads its keys
            return [t.clone() for t in out]

    with torch.no_grad():
        expect = {name: append(start(), name) for name in "ab"}
        cache = start()
    before = [t.clone() for t in cache]
    lined_up = threading.Barrier(2)
    got = run_lined_up(lambda name: append(cache, name, lined_up), "ab")
    for name in "ab":
        for what, g, e in zip(("output", "keys", "values"), got[name], expect[name], strict=True):
            assert torch.equal(g, e), f"thread {name}: {what} differ by {(g - e).abs().max().item():.3g}"
    assert all(torch.equal(t, b) for t, b in zip(cache, before, strict=True)), "the shared cache changed"


@pytest.mark.parametrize("fast_decode", [True, False], ids=["decode step", "modules"])
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_two_threads_continuing_one_model_state_match_sequential_calls(mode, fast_decode):
    """Megalodon.forward from one shared mid-chunk state in two threads at once, one token each, then one
    more token each: logits and states equal the same calls made one after the other, through the
    written-out decoding step and through the modules."""
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny")).eval()
    model.fast_decode = fast_decode
    prefix = torch.randint(0, model.config.vocab_size, (1, 5))  # mid-chunk: the state holds the chunk's keys
    new = {"a": torch.tensor([[11]]), "b": torch.tensor([[12]])}
    nxt = torch.tensor([[13]])
    lined_up = threading.Barrier(2)

    def continue_twice(state, name: str, barrier: threading.Barrier | None = None):
        with mode():
            _, after = model(new[name], state)
            if barrier is not None:
                barrier.wait(RENDEZVOUS_TIMEOUT_S)  # both have appended before either reads on
            logits, final = model(nxt, after)
            return logits.clone(), {key: t.clone() for key, t in final.to_flat().items()}

    with mode():
        expect = {name: continue_twice(model(prefix)[1], name) for name in "ab"}
        shared = model(prefix)[1]
        before = {key: t.clone() for key, t in shared.to_flat().items()}
    got = run_lined_up(lambda name: continue_twice(shared, name, lined_up), "ab")
    for name in "ab":
        logits, flat = got[name]
        assert torch.equal(logits, expect[name][0]), (
            f"thread {name}: logits differ by {(logits - expect[name][0]).abs().max().item():.3g}")
        for key, value in flat.items():
            assert torch.equal(value, expect[name][1][key]), f"thread {name}: state {key} differs"
    after = shared.to_flat()
    for key, value in before.items():
        assert torch.equal(after[key], value), f"the shared state's {key} changed"
