"""The written-out decoding step (model/decode_step.py) against its twin, the layer modules' forward:
token by token across chunk ends, for batches, configurations, branches and restored states; and the
calls it must leave to the modules."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import megalodoc.model.megalodon as megalodon_module
from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.decode_step import decode_step_applies
from megalodoc.model.generate import generate
from megalodoc.model.state import ModelState

from model_helpers import assert_states_close
from tolerances import DECODE_STEP_VS_MODULES_FP32, FLOAT64_EXACT, assert_close


def randomised(config: MegalodonConfig, dtype: torch.dtype, seed: int = 0) -> Megalodon:
    """A model in eval mode whose norm, q/k, output-scale parameters and biases are non-zero (the zero
    initialisation would hide a missing +1, offset or bias)."""
    torch.manual_seed(seed)
    model = Megalodon(config).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "timenorm.weight", "mega.gamma", "mega.beta", "nffn.alpha", "bias")):
                p.normal_(0, 0.3)
    return model


def pair(model: Megalodon) -> tuple[Megalodon, Megalodon]:
    """(the model taking the written-out step, a copy taking the modules)."""
    modules = copy.deepcopy(model)
    modules.fast_decode = False
    return model, modules


@pytest.fixture
def spy(monkeypatch) -> list[int]:
    """Records the batch size of every call that takes the written-out step."""
    calls: list[int] = []
    real = megalodon_module.decode_hidden_states

    def recording(model, ids, state):
        calls.append(ids.shape[0])
        return real(model, ids, state)

    monkeypatch.setattr(megalodon_module, "decode_hidden_states", recording)
    return calls


def assert_same_step(a, b, atol: float, what: str) -> None:
    """Logits and every state tensor of two steps."""
    (la, sa), (lb, sb) = a, b
    assert_close(la, lb, atol, f"{what} logits")
    assert_states_close(sa, sb, atol, what)


CONFIGS = {
    "tiny": {},
    "scaled embedding, own head": {"scale_emb": True, "share_emb": False},
    "no swiglu, rescaled ffn": {"swiglu": False, "rescale_nffn": True},
}


@pytest.mark.parametrize("overrides", list(CONFIGS.values()), ids=list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_token_by_token_equals_the_modules(overrides, dtype, mode, spy):
    config = dataclasses.replace(MegalodonConfig.preset("tiny"), **overrides)
    fast, modules = pair(randomised(config, dtype))
    C = config.chunk_size
    ids = torch.randint(0, config.vocab_size, (3, 5 + 2 * C + 3), generator=torch.Generator().manual_seed(1))
    atol = FLOAT64_EXACT if dtype == torch.float64 else DECODE_STEP_VS_MODULES_FP32
    context = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    with context:
        _, state = fast(ids[:, :5])  # a prompt ending mid-chunk; the tokens below cross two chunk ends
        a = b = (None, state)
        for t in range(5, ids.shape[1]):
            a, b = fast(ids[:, t : t + 1], a[1]), modules(ids[:, t : t + 1], b[1])
            assert_same_step(a, b, atol, f"token {t}")
    assert spy == [3] * (ids.shape[1] - 5)


def test_two_branches_of_one_state_and_a_restored_state_continue_as_the_modules(spy):
    fast, modules = pair(randomised(MegalodonConfig.preset("tiny"), torch.float32))
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        _, root = fast(ids[:, :7])
        restored = ModelState.from_flat(root.to_flat(), fast.config)
        first = second = third = reference = (None, root)
        for t in range(7, 40):  # the branches take turns, each appending to the chunk the root started
            first = fast(ids[:, t : t + 1], first[1])
            second = fast(ids[:, t : t + 1].flip(0), second[1])
            third = fast(ids[:, t : t + 1], third[1] if t > 7 else restored)
            reference = modules(ids[:, t : t + 1], reference[1])
            assert_same_step(first, reference, DECODE_STEP_VS_MODULES_FP32, f"first branch, token {t}")
            assert_same_step(third, reference, DECODE_STEP_VS_MODULES_FP32, f"restored, token {t}")
        flipped = (None, root)
        for t in range(7, 40):
            flipped = modules(ids[:, t : t + 1].flip(0), flipped[1])
        assert_same_step(second, flipped, DECODE_STEP_VS_MODULES_FP32, "second branch")
    assert len(spy) == 3 * 33


def test_calls_it_does_not_cover_take_the_modules(spy):
    model = randomised(MegalodonConfig.preset("tiny"), torch.float32)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, state = model(ids[:, :8])
        one = ids[:, 8:]
        assert decode_step_applies(model, one)
        model(one)  # no state: a fresh start
        model(ids[:, 7:9], state)  # two tokens
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(one, state)
        model.train()
        model(one, state)  # dropout belongs to the modules
        model.eval()
        model.fast_decode = False
        model(one, state)
        model.fast_decode = True
    model(one, state)  # with gradients
    bf16 = randomised(MegalodonConfig.preset("tiny"), torch.bfloat16)
    with torch.no_grad():
        _, bf16_state = bf16(ids[:, :8])
        bf16(one, bf16_state)
    dropping = randomised(MegalodonConfig.preset("tiny", hidden_dropout=0.5), torch.float32)
    dropping.layers[0].train()  # the model is in eval mode, one layer is not: its dropout runs
    with torch.no_grad():
        _, dropping_state = dropping(ids[:, :8])
        dropping(one, dropping_state)
    assert spy == []
    dropping.layers[0].eval()
    with torch.no_grad():
        dropping(one, dropping_state)
    assert spy == [1]


@pytest.mark.parametrize("tokens_before", [5, 126, 127], ids=["mid-chunk", "last two of a chunk", "chunk end"])
def test_a_state_made_by_a_float64_model_continues_in_float32_as_the_modules(tokens_before, spy):
    """The state's tensors in a wider dtype than the model's (validate accepts it): the cache is converted
    as the modules convert it. Values of 1,024 per head and 127 cached keys take the head-by-head products
    of one_query_attention, which need one dtype."""
    config = MegalodonConfig.preset("tiny", chunk_size=128, value_dim=2048)
    wide = randomised(config, torch.float64)
    fast, modules = pair(copy.deepcopy(wide).float())
    ids = torch.randint(0, config.vocab_size, (2, tokens_before + 3), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        _, state = wide(ids[:, :tokens_before])
        a = b = (None, state)
        for t in range(tokens_before, tokens_before + 3):
            a, b = fast(ids[:, t : t + 1], a[1]), modules(ids[:, t : t + 1], b[1])
            assert_same_step(a, b, DECODE_STEP_VS_MODULES_FP32, f"token {t}")
    assert spy == [2, 2, 2]


def test_the_shipped_model_gives_the_same_steps_and_tokens_with_and_without_it(spy):
    from megalodoc.model import load_model

    fast, modules = pair(load_model())
    prompt = torch.randint(4, fast.config.vocab_size, (300,), generator=torch.Generator().manual_seed(4))
    tokens = {name: list(generate(model, prompt, max_new_tokens=150, greedy=True))
              for name, model in (("fast", fast), ("modules", modules))}
    assert tokens["fast"] == tokens["modules"] and len(tokens["fast"]) == 150
    assert len(spy) >= 149  # every generated token after the first is one call of one token
    with torch.inference_mode():  # and step by step, the logits and states themselves
        _, state = fast(prompt[None, :200])
        a = b = (None, state)
        for t in range(200, 300):
            a, b = fast(prompt[None, t : t + 1], a[1]), modules(prompt[None, t : t + 1], b[1])
            assert_same_step(a, b, DECODE_STEP_VS_MODULES_FP32, f"token {t}")
