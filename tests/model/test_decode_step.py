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
from tolerances import FLOAT64_EXACT, assert_close

# fp32: both paths make the same products; only the order of a few sums may differ
FP32_TOKEN_BY_TOKEN = 1e-5


def randomised(config: MegalodonConfig, dtype: torch.dtype, seed: int = 0) -> Megalodon:
    """A model in eval mode whose norm, q/k and output-scale parameters are non-zero (the zero
    initialisation would hide a missing +1 or a missing offset)."""
    torch.manual_seed(seed)
    model = Megalodon(config).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "norm.bias", "timenorm.weight", "timenorm.bias", "mega.gamma",
                              "mega.beta", "nffn.alpha")):
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
    assert_close(sa.final_norm.var, sb.final_norm.var, atol, f"{what} final_norm.var")


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
    atol = FLOAT64_EXACT if dtype == torch.float64 else FP32_TOKEN_BY_TOKEN
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
            assert_same_step(first, reference, FP32_TOKEN_BY_TOKEN, f"first branch, token {t}")
            assert_same_step(third, reference, FP32_TOKEN_BY_TOKEN, f"restored, token {t}")
        flipped = (None, root)
        for t in range(7, 40):
            flipped = modules(ids[:, t : t + 1].flip(0), flipped[1])
        assert_same_step(second, flipped, FP32_TOKEN_BY_TOKEN, "second branch")
    assert len(spy) == 3 * 33


def test_calls_it_does_not_cover_take_the_modules(spy):
    model = randomised(MegalodonConfig.preset("tiny"), torch.float32)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, state = model(ids[:, :8])
        one = ids[:, 8:]
        assert decode_step_applies(model, one, state)
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
    assert spy == []


def test_the_shipped_model_generates_the_same_tokens_with_and_without_it(spy):
    from megalodoc.model import load_model

    fast, modules = pair(load_model())
    prompt = torch.randint(4, fast.config.vocab_size, (300,), generator=torch.Generator().manual_seed(4))
    tokens = {name: list(generate(model, prompt, max_new_tokens=150, greedy=True))
              for name, model in (("fast", fast), ("modules", modules))}
    assert tokens["fast"] == tokens["modules"] and len(tokens["fast"]) == 150
    assert len(spy) >= 149  # every generated token after the first is one call of one token
