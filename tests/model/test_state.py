"""ModelState: flat round trip, validation against a config, save -> restore -> continue bit-exact."""

import dataclasses

import pytest
import torch

from megalodoc.model import Megalodon, MegalodonConfig, ModelState, StateMismatchError


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Megalodon(MegalodonConfig.preset("tiny")).eval()


def test_flat_round_trip_is_bit_exact_mid_chunk(tiny):
    ids = torch.randint(0, 256, (2, 37))
    with torch.no_grad():
        _, state = tiny(ids)
    flat = state.to_flat()
    assert "layers.1.ema" in flat and "final_norm.var" in flat and "position" in flat
    again = ModelState.from_flat(flat, tiny.config)
    for key, value in again.to_flat().items():
        assert value.dtype == flat[key].dtype and torch.equal(value, flat[key]), key
    assert again.position == 37 and not again.at_chunk_boundary


def test_restored_state_continues_bit_identically(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    ids = torch.randint(0, 256, (1, 60))
    with torch.no_grad():
        _, state = tiny(ids[:, :32])
        expected, expected_state = tiny(ids[:, 32:], state)
        save_file(state.to_flat(), str(tmp_path / "s.safetensors"))
        restored = ModelState.from_flat(load_file(str(tmp_path / "s.safetensors")), tiny.config)
        got, got_state = tiny(ids[:, 32:], restored)
    assert torch.equal(got, expected)
    for key, value in expected_state.to_flat().items():
        assert torch.equal(value, got_state.to_flat()[key]), key


def test_boundary_state_size_is_constant(tiny):
    sizes = []
    with torch.no_grad():
        for L in (16, 64, 160):
            _, s = tiny(torch.randint(0, 256, (1, L)))
            sizes.append(s.nbytes())
    assert len(set(sizes)) == 1


def test_state_from_another_config_is_refused(tiny):
    other = Megalodon(dataclasses.replace(tiny.config, model_dim=64, norm_num_groups=4)).eval()
    with torch.no_grad():
        _, foreign = other(torch.randint(0, 256, (1, 5)))
    with pytest.raises(StateMismatchError, match=r"layers\.0\.ema has shape \(1, 64, 4\), expected \(1, 32, 4\)"):
        tiny(torch.randint(0, 256, (1, 3)), foreign)
    with pytest.raises(StateMismatchError, match="model has 2"):
        ModelState.from_flat({k: v for k, v in foreign.to_flat().items() if not k.startswith("layers.1")},
                             dataclasses.replace(other.config, num_layers=2)).validate(
            dataclasses.replace(other.config, num_layers=3))


def test_batch_size_mismatch_and_missing_entry(tiny):
    with torch.no_grad():
        _, state = tiny(torch.randint(0, 256, (2, 5)))
    with pytest.raises(StateMismatchError, match=r"expected \(1,"):
        tiny(torch.randint(0, 256, (1, 3)), state)
    flat = state.to_flat()
    del flat["layers.0.norm.var"]
    with pytest.raises(StateMismatchError, match="missing 'layers.0.norm.var'"):
        ModelState.from_flat(flat)
    flat = state.to_flat()
    flat["final_norm.count"] = flat["final_norm.count"] + 1
    with pytest.raises(StateMismatchError, match="disagrees with position"):
        ModelState.from_flat(flat, tiny.config)


def test_forward_checks_shapes_and_restore_checks_counts(tiny):
    """The model's per-call check reads no tensor data (shapes and dtypes only); a state whose norm
    counts disagree with its position is refused where it enters, in from_flat."""
    ids = torch.randint(0, tiny.config.vocab_size, (1, 20))
    with torch.no_grad():
        _, state = tiny(ids)
    flat = state.to_flat()
    flat["layers.0.norm.count"] = flat["layers.0.norm.count"] + 1
    with pytest.raises(StateMismatchError, match=r"layers.0.norm.count \[21\] disagrees with position 20"):
        ModelState.from_flat(flat, tiny.config)
    bad = ModelState.from_flat(flat)  # no config: nothing checked
    bad.validate(tiny.config, check_values=False)  # shapes are right
    with pytest.raises(StateMismatchError, match="disagrees with position"):
        bad.validate(tiny.config)


@pytest.mark.parametrize("length", [37, 64], ids=["mid-chunk", "chunk-boundary"])
def test_a_state_made_under_inference_mode_continues_with_gradients(tiny, length):
    """Ingest and generation make states under inference_mode; continuing one with gradients on (as a
    fine-tuning step would) runs its backward and gives the logits of a no_grad continuation, and the
    state handed in keeps its tensors."""
    ids = torch.randint(0, 256, (2, length + 9))
    with torch.inference_mode():
        _, state = tiny(ids[:, :length])
    before = {key: value.clone() for key, value in state.to_flat().items()}
    assert state.final_norm.count.is_inference()
    logits, after = tiny(ids[:, length:], state)
    logits.sum().backward()
    assert tiny.embed.weight.grad is not None and tiny.embed.weight.grad.abs().sum() > 0
    tiny.zero_grad(set_to_none=True)
    with torch.no_grad():
        expected, _ = tiny(ids[:, length:], state)
    assert torch.equal(logits.detach(), expected)
    assert not after.final_norm.count.is_inference() and after.position == length + 9
    for key, value in state.to_flat().items():
        assert torch.equal(value, before[key]), key
    normal = state.with_normal_tensors()
    assert not any(t.is_inference() for t in normal.to_flat().values())
    assert normal.with_normal_tensors() is normal  # nothing to copy: the same state back


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["layers.0.norm.var"].__setitem__((0, 0), -1.0), r"layers\.0\.norm\.var holds a negative"),
    (lambda f: f["final_norm.mean"].__setitem__((0, 1), float("nan")), r"final_norm\.mean holds a value that is "
                                                                         r"not finite"),
    (lambda f: f.__setitem__("layers.0.ema", f["layers.0.ema"].half()), r"layers\.0\.ema is torch\.float16"),
    (lambda f: f.__setitem__("position", torch.tensor(40.9)), r"position is torch\.float32\(\), expected an "
                                                              r"int64 scalar"),
    (lambda f: f.__setitem__("position", torch.tensor([40])), r"position is torch\.int64\(1,\)"),
])
def test_from_flat_refuses_values_no_model_call_makes(tiny, edit, message):
    with torch.no_grad():
        _, state = tiny(torch.randint(0, 256, (1, 40)))
    flat = {k: v.clone() for k, v in state.to_flat().items()}
    edit(flat)
    with pytest.raises(StateMismatchError, match=message):
        ModelState.from_flat(flat, tiny.config)
