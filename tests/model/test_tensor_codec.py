"""Tensor codec: named tensors + metadata -> safetensors bytes -> the same bits back."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load

from megalodoc.model.tensor_codec import COMPLEX_KEY, decode_state, encode_state


def bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bytes (complex as its real pairs), so NaN payloads and -0.0 count too."""
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def assert_bit_exact(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert got[name].shape == tensor.shape, name
        assert torch.equal(bits(got[name]), bits(tensor)), f"{name}: bits differ"


def awkward_state() -> dict[str, torch.Tensor]:
    """A state like the model's (complex CEMA state, fp32 norm statistics, int64 counts, the position)
    with values that a lossy path would change: NaN payloads, -0.0, infinities, subnormals."""
    generator = torch.Generator().manual_seed(0)
    ema = torch.complex(torch.randn(1, 6, 4, generator=generator), torch.randn(1, 6, 4, generator=generator))
    ema[0, 0, 0] = complex(-0.0, float("nan"))
    mean = torch.randn(1, 3, generator=generator)
    mean[0, 1] = -0.0
    var = torch.tensor([[float("inf"), 1e-45, float("-inf")]])
    nan_payload = torch.tensor([0x7FC00001], dtype=torch.int32).view(torch.float32)
    return {
        "layers.0.ema": ema,  # (B, D, N) complex64
        "layers.0.norm.count": torch.tensor([[7, 2**40]], dtype=torch.int64),
        "layers.0.norm.mean": mean,
        "layers.0.norm.var": var,
        "final_norm.var": nan_payload,
        "layers.1.ema": torch.randn(2, 3, dtype=torch.complex128, generator=generator),
        "position": torch.tensor(4096, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "half": torch.randn(5, generator=generator).to(torch.bfloat16),
        "empty": torch.zeros(0, 4),
    }


def test_round_trip_is_bit_exact_with_complex_and_special_values() -> None:
    state = awkward_state()
    metadata = {"schema_version": "1", "model_fingerprint": "abc", "chunk_size": "2048"}
    data = encode_state(state, metadata)
    tensors, meta = decode_state(data)
    assert_bit_exact(tensors, state)
    assert meta == metadata


def test_complex_is_stored_as_real_pairs_named_in_metadata() -> None:
    data = encode_state({"z": torch.ones(3, 2, dtype=torch.complex64), "r": torch.ones(2)}, {})
    raw = load(data)  # what any safetensors reader sees
    assert raw["z"].dtype == torch.float32 and raw["z"].shape == (3, 2, 2)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert json.loads(header["__metadata__"][COMPLEX_KEY]) == ["z"]


def test_non_contiguous_and_conjugated_inputs_round_trip() -> None:
    base = torch.randn(4, 6, dtype=torch.complex64)
    state = {"t": base.t(), "conj": base.conj(), "slice": torch.randn(8, 8)[:, ::3]}
    tensors, _ = decode_state(encode_state(state, {}))
    for name, tensor in state.items():
        assert torch.equal(bits(tensors[name]), bits(tensor.resolve_conj())), name


@pytest.mark.parametrize(
    ("tensors", "metadata", "message"),
    [
        ({"a": [1.0]}, {}, "not a torch.Tensor"),
        ({"": torch.ones(1)}, {}, "non-empty strings"),
        ({"a": torch.ones(1)}, {"k": 1}, "str -> str"),
        ({"a": torch.ones(1)}, {COMPLEX_KEY: "[]"}, "reserved"),
    ],
)
def test_bad_input_is_refused_with_the_culprit_named(tensors: dict, metadata: dict, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        encode_state(tensors, metadata)


@pytest.mark.parametrize("data", [b"", b"\x00" * 4, b"not a safetensors file at all", b"\xff" * 64])
def test_garbage_bytes_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a safetensors state"):
        decode_state(data)


dtypes = st.sampled_from([torch.float32, torch.float64, torch.complex64, torch.complex128, torch.int64])


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=3), min_size=1, max_size=4),
    dtype=dtypes,
    seed=st.integers(0, 2**31 - 1),
)
def test_any_shapes_and_dtypes_round_trip(shapes: list[list[int]], dtype: torch.dtype, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, shape in enumerate(shapes):
        raw = torch.randint(-(2**31), 2**31, (*shape, 4), generator=generator, dtype=torch.int64)
        # Arbitrary bit patterns (NaNs with payloads included), reinterpreted as the dtype.
        state[f"t{index}"] = raw.to(torch.int32).view(torch.uint8).view(dtype)  # (*shape, 16 // itemsize)
    tensors, _ = decode_state(encode_state(state, {"seed": str(seed)}))
    assert_bit_exact(tensors, state)


def test_equal_states_give_equal_bytes_whatever_the_metadata_order() -> None:
    """Blobs are content-addressed: one state must always encode to the same bytes."""
    state = awkward_state()
    items = [(f"key{i}", f"value{i}") for i in range(12)]
    encodings = {encode_state(state, dict(items[k:] + items[:k])) for k in range(12)}
    encodings |= {encode_state(dict(reversed(list(state.items()))), dict(items)) for _ in range(5)}
    assert len(encodings) == 1
    tensors, metadata = decode_state(encodings.pop())
    assert_bit_exact(tensors, state)
    assert metadata == dict(items)
