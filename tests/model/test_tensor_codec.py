"""Tensor codec: named tensors + metadata -> safetensors bytes -> the same bits back."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load, save

from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.safetensors_bytes import safetensors_bytes
from megalodoc.model.tensor_codec import COMPLEX_KEY, _canonical_header, decode_state, encode_state


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


def library_bytes(flat: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The oracle: the safetensors library's file with its header made canonical."""
    return _canonical_header(save(flat, metadata=metadata))


def as_real(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: (torch.view_as_real(t) if t.is_complex() else t).contiguous() for name, t in tensors.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_the_direct_writer_gives_the_library_bytes_for_model_states(dtype) -> None:
    """States are written without the library (its per-tensor checks cost about 0.5 ms a snapshot); the
    bytes must be the library's, for the state of a real model in every compute dtype, at a chunk
    boundary (empty keys and values) and inside a chunk."""
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=64, chunk_size=8)).to(dtype)
    metadata = {"schema_version": "3", "model_fingerprint": "ab" * 32, "position": "16"}
    with torch.no_grad():
        for length in (16, 13):
            _, state = model(torch.randint(0, 64, (2, length)))
            flat = as_real(state.to_flat())
            assert safetensors_bytes(flat, metadata) == library_bytes(flat, metadata)
    complex_names = sorted(name for name, t in state.to_flat().items() if t.is_complex())
    listed = {COMPLEX_KEY: json.dumps(complex_names)} if complex_names else {}
    assert encode_state(state.to_flat(), metadata) == library_bytes(flat, {**metadata, **listed})


def test_the_direct_writer_gives_the_library_bytes_for_awkward_values_and_empty_metadata() -> None:
    flat = as_real(awkward_state())
    for metadata in ({}, {"z": "last", "A": "upper", "é": "non-ascii"}):
        assert safetensors_bytes(flat, metadata) == library_bytes(flat, metadata)
    assert safetensors_bytes({}, {"a": "b"}) == library_bytes({}, {"a": "b"})
    complex_names = sorted(name for name, t in awkward_state().items() if t.is_complex())
    assert len(complex_names) == 2
    assert encode_state(awkward_state(), {"a": "b"}) == library_bytes(
        flat, {"a": "b", COMPLEX_KEY: json.dumps(complex_names)})


_WRITER_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.float16, torch.bfloat16, torch.int32,
                  torch.float32, torch.float64, torch.int64]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(st.sampled_from("ab_.0Z"), min_size=1, max_size=6),
                       st.tuples(st.sampled_from(_WRITER_DTYPES), st.lists(st.integers(0, 3), max_size=3)),
                       max_size=8))
def test_the_direct_writer_gives_the_library_bytes_for_any_mix_of_dtypes_shapes_and_names(spec) -> None:
    generator = torch.Generator().manual_seed(len(spec))
    flat = {name: (torch.randn(shape, generator=generator) * 50).to(dtype) for name, (dtype, shape) in spec.items()}
    assert safetensors_bytes(flat, {"k": "v"}) == library_bytes(flat, {"k": "v"})


def test_dtypes_outside_the_table_are_left_to_the_library() -> None:
    assert safetensors_bytes({"x": torch.zeros(2, dtype=torch.uint16)}, {}) is None
