"""States as bytes: bit-exact round trips through a real store, refusals that name the state, dtype policy."""

from __future__ import annotations

import logging

import pytest
import torch

from megalodoc.model import (
    IncompatibleStateError,
    Megalodon,
    MegalodonConfig,
    load_bundle,
    state_from_bytes,
    state_to_bytes,
)
from megalodoc.model.tensor_codec import decode_state, encode_state
from megalodoc.storage import open_store


def tiny_bundle(dtype=torch.float32, seed=0, **overrides):
    torch.manual_seed(seed)
    model = Megalodon(MegalodonConfig.preset("tiny", **overrides))
    return load_bundle(model, dtype=dtype)


def read(bundle, ids, state=None):
    with torch.no_grad():
        _, state = bundle.model(torch.tensor([ids]), state, compute_logits=False)
    return state


def assert_same_state(a, b):
    fa, fb = a.to_flat(), b.to_flat()
    assert fa.keys() == fb.keys()
    for key in fa:
        assert fa[key].dtype == fb[key].dtype and torch.equal(fa[key], fb[key]), key


def test_state_round_trips_bit_exactly_through_the_store(tmp_path):
    bundle = tiny_bundle()
    state = read(bundle, list(range(3, 40)))  # mid-chunk: keys and values too
    store = open_store(str(tmp_path / "s.db"))
    doc = store.create_document("h", "book.txt", "text", "/b", "tok", bundle.fingerprint)
    info = store.add_snapshot(doc.id, state.position, state_to_bytes(state, bundle), bundle.fingerprint, 1)
    restored = state_from_bytes(store.load_snapshot_bytes(info.id), bundle, "snapshot 1")
    store.close()
    assert_same_state(restored, state)
    _, metadata = decode_state(state_to_bytes(state, bundle))
    assert metadata["compute"] == "float32/cpu/calls4" and metadata["position"] == "37"
    # and it continues exactly like the state that was never stored
    assert_same_state(read(bundle, [7, 8, 9], restored), read(bundle, [7, 8, 9], state))


def test_refusals_name_the_state():
    bundle = tiny_bundle()
    data = state_to_bytes(read(bundle, [5, 6, 7]), bundle)
    with pytest.raises(IncompatibleStateError, match="^snapshot 9 of a.txt: state was made by another model"):
        state_from_bytes(data, tiny_bundle(seed=1), "snapshot 9 of a.txt")
    tensors, metadata = decode_state(data)
    with pytest.raises(IncompatibleStateError, match="^s: state chunk size 8 != model chunk size 16"):
        state_from_bytes(encode_state(tensors, {**metadata, "chunk_size": "8"}), bundle, "s")
    with pytest.raises(IncompatibleStateError, match="^s: state schema version 0 is not"):
        state_from_bytes(encode_state(tensors, {**metadata, "schema_version": "0"}), bundle, "s")
    with pytest.raises(IncompatibleStateError, match="^s: unreadable state"):
        state_from_bytes(b"not a state", bundle, "s")


def test_other_compute_dtype_continues_with_one_warning(caplog):
    fp32 = tiny_bundle(seed=3)
    bf16 = tiny_bundle(dtype=torch.bfloat16, seed=3)  # fingerprinted before the cast
    assert bf16.fingerprint == fp32.fingerprint and bf16.model.embed.weight.dtype == torch.bfloat16
    ids = list(range(3, 3 + 16 + 5))  # one chunk and 5 tokens: keys/values are carried too
    data = state_to_bytes(read(fp32, ids), fp32)
    with caplog.at_level(logging.WARNING, logger="megalodoc.model.state_codec"):
        same = state_from_bytes(data, fp32, "s")
        assert not caplog.records  # same dtype and device: exact, nothing to say
        restored = state_from_bytes(data, bf16, "snapshot 4")
        state_from_bytes(data, bf16, "snapshot 4")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "computed with float32/cpu/calls4 and continues with bfloat16/cpu/calls4" in messages[0]
    assert restored.layers[0].keys.dtype == torch.bfloat16  # activations follow the compute dtype
    assert restored.layers[0].ema.dtype == torch.complex64  # the recurrent state keeps full precision
    assert torch.equal(restored.layers[0].ema, same.layers[0].ema)
    continued = read(bf16, [9, 10, 11], restored)
    assert continued.position == len(ids) + 3


def test_a_state_read_one_chunk_per_call_is_accepted_with_one_warning(caplog):
    """States stored before reading spanned several chunks per call are labelled "float32/cpu": same model,
    so they load unchanged, with one warning that the continuation is within rounding, not bit-identical."""
    bundle = tiny_bundle(seed=5)
    state = read(bundle, list(range(3, 3 + 16)))
    tensors, metadata = decode_state(state_to_bytes(state, bundle))
    legacy = encode_state(tensors, {**metadata, "compute": "float32/cpu"})
    with caplog.at_level(logging.WARNING, logger="megalodoc.model.state_codec"):
        restored = state_from_bytes(legacy, bundle, "snapshot 7 of old.txt")
        state_from_bytes(legacy, bundle, "snapshot 8 of old.txt")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith("snapshot 7 of old.txt: state was computed with float32/cpu and continues with "
                                  "float32/cpu/calls4")
    assert all(torch.equal(a, b) for a, b in zip(restored.to_flat().values(), state.to_flat().values(), strict=True))
