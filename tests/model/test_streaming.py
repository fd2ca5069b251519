"""Streaming contract: any split of a sequence (mid-chunk, token by token) equals one call."""

import copy

import pytest
import torch

from megalodoc.model import Megalodon, MegalodonConfig

from model_helpers import assert_states_close, micro_config
from tolerances import FLOAT64_EXACT, STREAM_VS_ONESHOT_LOGITS, assert_close


def run_in_pieces(model, ids, sizes):
    state, outs, pos = None, [], 0
    for size in sizes:
        logits, state = model(ids[:, pos : pos + size], state)
        outs.append(logits)
        pos += size
    assert pos == ids.shape[1]
    return torch.cat(outs, dim=1), state


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny")).eval()
    # non-zero norm and q/k parameters so nothing hides behind the zero initialisation
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "norm.bias", "mega.gamma", "mega.beta")):
                p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize(
    "sizes",
    [[5, 11, 16, 20, 18], [16, 16, 16, 22], [33, 37], [15, 1, 54], [1] * 70],
    ids=["mid-chunk", "chunk-aligned", "two-calls", "C-1+1", "token-by-token"],
)
def test_split_equals_one_shot(tiny, sizes):
    ids = torch.randint(0, 256, (2, 70), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, full_state = tiny(ids)
        pieces, state = run_in_pieces(tiny, ids, sizes)
    assert_close(pieces, full, STREAM_VS_ONESHOT_LOGITS, f"logits split {sizes[:6]}")
    assert_states_close(state, full_state, 1e-5, "final state")


@pytest.mark.parametrize("L", [15, 16, 17])  # C-1, C, C+1
def test_lengths_around_chunk_size(tiny, L):
    ids = torch.randint(0, 256, (3, L), generator=torch.Generator().manual_seed(L))
    with torch.no_grad():
        full, full_state = tiny(ids)
        steps, state = run_in_pieces(tiny, ids, [1] * L)
    assert_close(steps, full, STREAM_VS_ONESHOT_LOGITS, f"token-by-token L={L}")
    assert full_state.layers[0].keys.shape[1] == L % 16
    assert_states_close(state, full_state, 1e-5, f"state L={L}")


def test_float64_streaming_is_exact_to_rounding():
    torch.manual_seed(3)
    model = Megalodon(micro_config()).double().eval()
    ids = torch.randint(0, 16, (2, 19))
    with torch.no_grad():
        full, _ = model(ids)
        pieces, _ = run_in_pieces(model, ids, [3, 1, 6, 9])
    assert_close(pieces, full.double(), FLOAT64_EXACT * 100, "float64 streamed logits")


def record_attention(monkeypatch):
    """Wrap the model's chunked_attention: every call's inputs and output, in call order."""
    from megalodoc.model import mega_attention

    calls = []
    real = mega_attention.chunked_attention

    def recording(q, k, v, cached_keys, cached_values, **kwargs):
        out = real(q, k, v, cached_keys, cached_values, **kwargs)
        calls.append({"q": q, "k": k, "v": v, "cached_keys": cached_keys, "cached_values": cached_values,
                      "kwargs": kwargs, "o": out[0]})
        return out

    monkeypatch.setattr(mega_attention, "chunked_attention", recording)
    return calls, real


def test_attention_is_chunk_local(tiny, monkeypatch):
    """Attention never looks across a chunk boundary: in every layer, replacing the queries, keys and
    values of the first chunk by noise leaves the attention output of the later chunks bit-identical
    (it would change if any later token attended to an earlier chunk), while the first chunk's output
    changes. A token of an earlier chunk still reaches later logits, through CEMA and the norms."""
    C = tiny.config.chunk_size
    ids = torch.randint(0, 256, (1, 3 * C), generator=torch.Generator().manual_seed(5))
    calls, attention = record_attention(monkeypatch)
    with torch.no_grad():
        full1, _ = tiny(ids)
    assert len(calls) == tiny.config.num_layers
    noise = torch.Generator().manual_seed(9)
    for layer, call in enumerate(calls):
        q, k, v = (call[name].clone() for name in ("q", "k", "v"))  # (B, 3C, H, d)
        for t in (q, k, v):
            t[:, :C] = torch.randn(t[:, :C].shape, generator=noise) * 3
        o, _, _ = attention(q, k, v, call["cached_keys"], call["cached_values"], **call["kwargs"])
        assert torch.equal(o[:, C:], call["o"][:, C:]), f"layer {layer}: later chunks saw the first chunk"
        assert not torch.allclose(o[:, :C], call["o"][:, :C]), f"layer {layer}: the perturbation did nothing"
    # the earliest chunk still influences late logits through the carried state
    ids2 = ids.clone()
    ids2[0, 3] = (ids2[0, 3] + 1) % 256
    with torch.no_grad():
        full2, _ = tiny(ids2)
    assert (full2[0, -1] - full1[0, -1]).abs().max() > 1e-6


def test_attention_is_chunk_local_when_streaming(tiny, monkeypatch):
    """The same from a carried state: a call that starts mid-chunk attends to the cached keys of its
    own chunk only; at a chunk boundary the state holds no keys at all."""
    C = tiny.config.chunk_size
    ids = torch.randint(0, 256, (1, 2 * C + 5), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        _, boundary = tiny(ids[:, : 2 * C])
        _, mid = tiny(ids[:, : C + 5])
    assert boundary.at_chunk_boundary and all(layer.keys.shape[1] == 0 for layer in boundary.layers)
    assert all(layer.keys.shape[1] == 5 for layer in mid.layers)
    calls, attention = record_attention(monkeypatch)
    with torch.no_grad():
        tiny(ids[:, C + 5 :], mid)  # finishes chunk 1 (11 tokens), then chunk 2 (5 tokens)
    noise = torch.Generator().manual_seed(10)
    for layer, call in enumerate(calls):
        head = C - 5
        q, k, v = (call[name].clone() for name in ("q", "k", "v"))  # (B, head + 5, H, d)
        cached_k = torch.randn(call["cached_keys"].shape, generator=noise)
        cached_v = torch.randn(call["cached_values"].shape, generator=noise)
        for t in (q, k, v):
            t[:, :head] = torch.randn(t[:, :head].shape, generator=noise)
        o, _, _ = attention(q, k, v, cached_k, cached_v, **call["kwargs"])
        assert torch.equal(o[:, head:], call["o"][:, head:]), f"layer {layer}: chunk 2 saw chunk 1"
        o, _, _ = attention(call["q"], call["k"], call["v"], cached_k, cached_v, **call["kwargs"])
        assert not torch.allclose(o[:, :head], call["o"][:, :head]), f"layer {layer}: the cache was not used"


@pytest.mark.parametrize("fast_decode", [True, False], ids=["decode step", "modules"])
def test_state_is_never_mutated(tiny, fast_decode):
    ids = torch.randint(0, 256, (2, 21), generator=torch.Generator().manual_seed(7))
    model = copy.deepcopy(tiny)
    model.fast_decode = fast_decode  # a one-token call takes model/decode_step.py, or the modules
    with torch.no_grad():
        _, state = model(ids)
        before = {k: v.clone() for k, v in state.to_flat().items()}
        model(ids[:, :9], state)
        model(ids[:, :1], state)
    after = state.to_flat()
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"{key} was modified by a forward call"


def test_without_logits_gives_same_state(tiny):
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        logits, s1 = tiny(ids)
        none, s2 = tiny(ids, compute_logits=False)
    assert none is None and logits is not None
    for key, value in s1.to_flat().items():
        assert torch.equal(value, s2.to_flat()[key]), key


def test_hidden_states_are_what_the_head_reads(tiny):
    """hidden_states is forward without the head: the head over it gives forward's logits bit for bit, from
    an empty and from a carried state, with the same state after."""
    head = tiny.embed.weight if tiny.config.share_emb else tiny.output.output.weight  # (V, D)
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        _, carried = tiny(ids[:, :23])
        for state in (None, carried):
            logits, s1 = tiny(ids[:, 23:], state)
            hidden, s2 = tiny.hidden_states(ids[:, 23:], state)
            assert hidden.shape == (2, 17, tiny.config.model_dim)
            assert torch.equal(torch.nn.functional.linear(hidden, head), logits)
            for key, value in s1.to_flat().items():
                assert torch.equal(value, s2.to_flat()[key]), key


def test_inference_mode_streams_like_no_grad(tiny):
    """Under torch.inference_mode (a fresh copy, so its coefficients and tables of powers are first built
    there, then reused from a carried state) the logits and state equal no_grad's bit for bit."""
    ids = torch.randint(0, 256, (2, 70), generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        expected, expected_state = run_in_pieces(tiny, ids, [33, 37])
    fresh = copy.deepcopy(tiny)  # after a call: the cached coefficients must be plain tensors, no graph
    with torch.inference_mode():
        got, state = run_in_pieces(fresh, ids, [33, 37])
    assert torch.equal(got, expected)
    for key, value in expected_state.to_flat().items():
        assert torch.equal(value, state.to_flat()[key]), key


def test_explicit_initial_state_equals_none(tiny):
    ids = torch.randint(0, 256, (2, 25), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        a, _ = tiny(ids)
        b, _ = tiny(ids, tiny.initial_state(2))
    assert_close(b, a, 1e-6, "explicit fresh state")


def test_gradcheck_state_carrying_path_batch3():
    """Gradients through a carried state with B=3 rows that differ: the second call's loss w.r.t. the
    model parameters and the first call's inputs (float64, micro config)."""
    torch.manual_seed(11)
    model = Megalodon(micro_config()).double().train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "norm.bias", "mega.gamma", "mega.beta")):
                p.normal_(0, 0.3)
    ids = torch.randint(0, 16, (3, 10))
    # the parameters of the stateful pieces (CEMA, timestep norms) and the q/k affine of every layer
    stateful = ("mega.cema.", "mega.timenorm.", "final_norm.", "mega.gamma", "mega.beta")
    names = [n for n, _ in model.named_parameters() if any(s in n for s in stateful)]
    params = [dict(model.named_parameters())[n] for n in names]

    def loss_fn(*flat):
        replaced = dict(zip(names, flat, strict=True))
        _, state = torch.func.functional_call(model, replaced, (ids[:, :6],))
        logits, _ = torch.func.functional_call(model, replaced, (ids[:, 6:], state))
        return logits

    inputs = [p.detach().clone().requires_grad_(True) for p in params]
    assert torch.autograd.gradcheck(loss_fn, inputs, fast_mode=True, atol=1e-6)


@pytest.mark.parametrize("mode", [torch.enable_grad, torch.no_grad], ids=["grad", "no_grad"])
def test_an_empty_call_reads_nothing(tiny, mode):
    """ids (B, 0), an empty piece of a stream: logits (B, 0, V), also for the last position only, and the
    state unchanged (a fresh one for state=None); reading on after it equals reading on without it."""
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 256, (2, 21), generator=gen)  # 21: mid-chunk after one whole chunk of 16
    empty = ids[:, :0]
    V = tiny.config.vocab_size
    with mode():
        _, state = tiny(ids[:, :19])
        for given, expect in ((None, tiny.initial_state(2)), (state, state)):
            for kwargs in ({}, {"last_logits_only": True}):
                logits, after = tiny(empty, given, **kwargs)
                assert logits.shape == (2, 0, V) and logits.dtype == torch.float32, (tuple(logits.shape), kwargs)
                assert after.position == expect.position
                for key, value in expect.to_flat().items():
                    assert torch.equal(after.to_flat()[key], value), f"{key} changed by an empty call"
            hidden, _ = tiny.hidden_states(empty, given)
            assert hidden.shape == (2, 0, tiny.config.model_dim)
            assert tiny(empty, given, compute_logits=False)[0] is None
        expect_logits, expect_state = tiny(ids[:, 19:], state)
        logits, after = tiny(ids[:, 19:], tiny(empty, state)[1])
    assert torch.equal(logits, expect_logits)
    assert_states_close(after, expect_state, 0.0, "after an empty call")


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_branches_from_one_mid_chunk_state_do_not_share_the_chunk_buffer(tiny, mode):
    """Token-by-token decoding appends into one chunk buffer (under inference_mode too, as Generation
    runs); continuing the same state twice (a branch) must give each branch its own keys: both equal a run
    from scratch, and the state is unchanged."""
    gen = torch.Generator().manual_seed(11)
    prefix, a, b = (torch.randint(0, 256, (1, n), generator=gen) for n in (5, 4, 4))
    with mode():
        _, state = tiny(prefix)
        snapshot = {k: v.clone() for k, v in state.to_flat().items()}
        results = {}
        for name, branch in (("a", a), ("b", b), ("a again", a)):
            s, outs, buffers = state, [], set()
            for t in range(branch.shape[1]):
                out, s = tiny(branch[:, t : t + 1], s)
                outs.append(out)
                buffers.add(s.layers[0].values.untyped_storage().data_ptr())
            assert len(buffers) == 1, f"branch {name}: {len(buffers)} chunk buffers for {branch.shape[1]} tokens"
            results[name] = (torch.cat(outs, 1), s)
        for name, branch in (("a", a), ("b", b)):
            expect, expect_state = tiny(torch.cat((prefix, branch), 1))
            got, got_state = results[name]
            assert torch.allclose(got, expect[:, prefix.shape[1]:], atol=STREAM_VS_ONESHOT_LOGITS), name
            assert_states_close(got_state, expect_state, STREAM_VS_ONESHOT_LOGITS, f"branch {name}")
        assert torch.equal(results["a"][0], results["a again"][0])
        assert torch.equal(results["a"][1].layers[0].keys, results["a again"][1].layers[0].keys)
        assert results["a"][1].layers[0].keys.data_ptr() != results["b"][1].layers[0].keys.data_ptr()
    for key, value in state.to_flat().items():
        assert torch.equal(value, snapshot[key]), f"{key} changed after branching"
