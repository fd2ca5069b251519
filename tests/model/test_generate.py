"""Generation: greedy equals argmax of a full forward, seeds, stop tokens, filters, from a state."""

import gc
import subprocess
import sys
import textwrap

import pytest
import torch

from megalodoc.model import Generation, GenerationUsedError, Megalodon, MegalodonConfig, SamplingSettings, generate
from megalodoc.model.generate import filter_logits, pick_token


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Megalodon(MegalodonConfig.preset("tiny")).eval()


def test_greedy_matches_full_forward_argmax(tiny):
    prompt = [2, 17, 99, 4]
    tokens = list(generate(tiny, prompt, max_new_tokens=20, greedy=True))
    assert len(tokens) == 20
    seq = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits, _ = tiny(seq)
    expected = logits[0, len(prompt) - 1 : -1].argmax(-1).tolist()
    assert tokens == expected


def test_the_consumer_keeps_gradients_between_tokens(tiny):
    """The model runs without gradients, but only inside each call: code run between two tokens (here a
    small training step) sees the caller's grad mode, and the generated tokens still carry no graph."""
    weight = torch.ones(3, requires_grad=True)
    grads = []
    gen = Generation(tiny, [2, 17], settings=SamplingSettings(max_new_tokens=4, greedy=True))
    for _ in gen:
        assert torch.is_grad_enabled()
        (weight * 2.0).sum().backward()
        grads.append(weight.grad.clone())
    assert [g.tolist() for g in grads] == [[2.0] * 3, [4.0] * 3, [6.0] * 3, [8.0] * 3]
    assert not any(t.requires_grad for t in gen.final_state.to_flat().values())
    assert torch.is_grad_enabled()


def test_seed_reproducible_and_state_covers_everything(tiny):
    a = Generation(tiny, [2, 5], settings=SamplingSettings(max_new_tokens=12, seed=7, top_k=50, top_p=0.9))
    b = Generation(tiny, [2, 5], settings=SamplingSettings(max_new_tokens=12, seed=7, top_k=50, top_p=0.9))
    ta, tb = list(a), list(b)
    assert ta == tb and a.stopped_by == "max_new_tokens"
    assert a.state.position == 2 + 12
    c = list(generate(tiny, [2, 5], max_new_tokens=12, seed=8, top_k=50))
    assert c != ta


def test_stop_token_ends_generation(tiny):
    first = list(generate(tiny, [2, 9], max_new_tokens=10, greedy=True))
    stop = first[3]
    gen = Generation(tiny, [2, 9], settings=SamplingSettings(max_new_tokens=10, greedy=True, stop_tokens=(stop,)))
    got = list(gen)
    assert got == first[: first.index(stop) + 1] and gen.stopped_by == "stop_token"


def test_generation_from_a_state_equals_from_the_whole_prompt(tiny):
    prefix = torch.randint(0, 256, (1, 37), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, state = tiny(prefix[:, :-1])
    from_state = list(generate(tiny, prefix[0, -1:], state, max_new_tokens=8, greedy=True))
    from_scratch = list(generate(tiny, prefix[0], None, max_new_tokens=8, greedy=True))
    assert from_state == from_scratch


def test_filters():
    logits = torch.tensor([1.0, 3.0, 2.0, 0.0])
    assert torch.isinf(filter_logits(logits, 2, 1.0)).tolist() == [True, False, False, True]
    # nucleus 0.5: the best token alone holds > 0.5 of the mass
    assert torch.isfinite(filter_logits(logits, 0, 0.5)).tolist() == [False, True, False, False]



def test_top_k_one_samples_the_greedy_tokens(tiny):
    greedy = list(generate(tiny, [2, 11], max_new_tokens=8, greedy=True))
    for seed in (0, 1):
        assert list(generate(tiny, [2, 11], max_new_tokens=8, top_k=1, temperature=1.5, seed=seed)) == greedy


def test_a_tiny_temperature_samples_near_greedy(tiny):
    """Every finite temperature > 0 samples: logits / 1e-38 overflowed fp32 to inf and softmax gave NaN
    ("probability tensor contains either inf, nan or element < 0"); 5e-324 is 0 in fp32."""
    greedy = list(generate(tiny, [2, 11], max_new_tokens=8, greedy=True))
    for temperature in (1e-30, 1e-38, 1e-40, 1e-45, 5e-324):
        for top_k, top_p in ((0, 1.0), (5, 0.9)):
            got = list(generate(tiny, [2, 11], max_new_tokens=8, temperature=temperature, top_k=top_k, top_p=top_p,
                                seed=0))
            assert got == greedy, f"temperature {temperature}, top_k {top_k}, top_p {top_p}: {got} != {greedy}"


def test_a_tiny_temperature_splits_ties_and_keeps_large_logits_finite():
    generator = torch.Generator().manual_seed(0)
    settings = SamplingSettings(temperature=1e-38)
    assert {pick_token(torch.tensor([30.0, 29.0, -5.0]), settings, generator) for _ in range(20)} == {0}
    assert {pick_token(torch.tensor([4.0, 4.0, 1.0]), settings, generator) for _ in range(20)} == {0, 1}
    bf16 = torch.tensor([300.0, -300.0], dtype=torch.bfloat16)  # as a bf16 model hands them over
    assert pick_token(bf16, SamplingSettings(temperature=5e-324), generator) == 0


def test_bad_settings_are_named(tiny):
    with pytest.raises(ValueError, match=r"top_p=0 must be in \(0, 1\]"):
        SamplingSettings(top_p=0)
    with pytest.raises(ValueError, match="temperature=-1"):
        SamplingSettings(temperature=-1)
    for value in (float("nan"), float("inf")):  # NaN passed `temperature < 0` and failed in sampling
        with pytest.raises(ValueError, match=f"temperature={value} must be >= 0 and finite"):
            SamplingSettings(temperature=value)
    with pytest.raises(ValueError, match="top_p=nan"):
        SamplingSettings(top_p=float("nan"))
    # a seed past 64 bits failed only once sampling began, in torch ("Overflow when unpacking long long");
    # 2.5 or True for a count ran (3 tokens for 2.5) and was recorded as given
    for name, value, said in (("seed", 2**64, r"seed=18446744073709551616 must be a whole number in \[0, 2\*\*64\)"),
                              ("seed", -1, "seed=-1 must"), ("seed", 1.5, "seed=1.5 must"),
                              ("max_new_tokens", 2.5, r"max_new_tokens=2.5 must be a whole number >= 0"),
                              ("max_new_tokens", True, "max_new_tokens=True must"), ("top_k", 1.0, "top_k=1.0 must")):
        with pytest.raises(ValueError, match=said):
            SamplingSettings(**{name: value})
    last = 2**64 - 1  # the largest seed torch takes
    assert list(generate(tiny, [2, 11], max_new_tokens=3, seed=last)) == list(generate(tiny, [2, 11], max_new_tokens=3,
                                                                                        seed=last))
    with pytest.raises(ValueError, match="prompt is empty"):
        Generation(tiny, [])


def test_generation_is_single_use_and_hands_back_its_final_state(tiny):
    gen = Generation(tiny, [2, 5, 7], settings=SamplingSettings(max_new_tokens=4, greedy=True))
    with pytest.raises(GenerationUsedError, match="has not finished"):
        _ = gen.final_state
    tokens = list(gen)
    final = gen.final_state
    assert final.position == 3 + 4
    with pytest.raises(GenerationUsedError, match="already iterated"):
        iter(gen)
    with pytest.raises(GenerationUsedError):
        list(gen)
    assert gen.final_state is final and final.position == 7 and gen.tokens == tokens  # nothing fed twice
    # a retry is a new Generation from the same starting state, and gives the same tokens
    assert list(Generation(tiny, [2, 5, 7], settings=SamplingSettings(max_new_tokens=4, greedy=True))) == tokens


def test_dropping_the_iterator_stops_the_generation_at_once(tiny):
    """No reference cycle keeps a suspended generation alive for the garbage collector: dropping its
    iterator closes it there and then, with the state covering the tokens seen."""
    gen = Generation(tiny, [2, 5, 7], settings=SamplingSettings(max_new_tokens=10, greedy=True))
    iterator = iter(gen)
    seen = [next(iterator), next(iterator)]
    gc.disable()
    try:
        del iterator
        assert gen.stopped_by == "closed" and gen.final_state.position == 3 + 2
    finally:
        gc.enable()
    with torch.no_grad():
        _, expected = tiny(torch.tensor([[2, 5, 7, *seen]]))
    assert torch.allclose(gen.final_state.layers[0].ema, expected.layers[0].ema, atol=1e-5)


def test_a_generation_suspended_at_interpreter_exit_exits_cleanly():
    """A script that leaves a generation suspended when it ends exits with status 0 (PyTorch used to abort
    the process while the garbage collector closed the generation at exit)."""
    script = textwrap.dedent("""
        import torch
        from megalodoc.model import Generation, Megalodon, MegalodonConfig, SamplingSettings
        torch.manual_seed(0)
        model = Megalodon(MegalodonConfig.preset("tiny")).eval()
        generation = Generation(model, [2, 5, 7], settings=SamplingSettings(greedy=True))
        iterator = iter(generation)
        print(next(iterator), next(iterator))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(done.stdout.split()) == 2


def test_stopping_early_leaves_a_state_that_covers_the_tokens_seen(tiny):
    gen = Generation(tiny, [2, 5, 7], settings=SamplingSettings(max_new_tokens=10, greedy=True))
    seen = []
    for token in gen:
        seen.append(token)
        if len(seen) == 3:
            break
    gen.close()
    assert gen.stopped_by == "closed" and gen.final_state.position == 3 + 3
    with torch.no_grad():
        _, expected = tiny(torch.tensor([[2, 5, 7, *seen]]))
    assert torch.allclose(gen.final_state.layers[0].ema, expected.layers[0].ema, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_last_logits_only_gives_the_last_row_of_the_full_logits_and_the_same_state(dtype):
    """Generation reads only the prompt's last logits, so its prompt call asks the head for that row alone;
    the row must be the full forward's last row, and the state must be the same bits."""
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny")).to(dtype).eval()
    ids = torch.randint(0, 256, (2, 45), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, start = model(ids[:, :9])
        full, full_state = model(ids[:, 9:], start)
        last, last_state = model(ids[:, 9:], start, last_logits_only=True)
    assert last.shape == (2, 1, 256) and last.dtype == full.dtype
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(last, full[:, -1:], rtol=tolerance, atol=tolerance)
    for name, tensor in full_state.to_flat().items():
        assert torch.equal(last_state.to_flat()[name], tensor), name


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled"])
def test_a_tokenizer_with_fewer_pieces_than_embeddings_only_gets_ids_it_has(greedy):
    """A model with more embeddings than its tokenizer has pieces (allowed: at most vocab_size) never
    picks an id the tokenizer cannot decode, and the text of what it generated decodes."""
    from megalodoc.model import load_bundle
    from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR, TOKENIZER_FILE
    from megalodoc.model.tokenizer import IncrementalDecoder

    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=16384)).eval()  # the tokenizer has 8192 pieces
    bundle = load_bundle(model, tokenizer=DEFAULT_MODEL_DIR / TOKENIZER_FILE)
    pieces = bundle.tokenizer.vocab_size
    assert pieces == 8192
    with torch.no_grad():  # this model's own choice lies beyond the pieces: the restriction is what decides
        logits, _ = model(torch.tensor([[5, 6, 7]]))
    assert int(logits[0, -1].argmax()) >= pieces or not greedy
    settings = SamplingSettings(max_new_tokens=40, greedy=greedy, temperature=50.0, seed=3)
    generation = Generation(bundle, [5, 6, 7], settings=settings)
    tokens = list(generation)
    assert len(tokens) == 40 and max(tokens) < pieces
    decoder = IncrementalDecoder(bundle.tokenizer)
    assert "".join(decoder.push(t) for t in tokens) + decoder.finish() == bundle.tokenizer.decode(tokens)
    if greedy:  # the best of the ids the tokenizer has
        assert tokens[0] == int(logits[0, -1, :pieces].argmax())
