"""Tensor codec: a flat dict of named tensors plus string metadata <-> safetensors bytes, bit-exact.

safetensors has no complex dtypes, so a complex tensor `x` of shape S is stored as its real view of shape
(*S, 2) (complex64 -> float32 pairs, complex128 -> float64 pairs) under the same name, and the names of
such tensors are listed (JSON) in the reserved metadata key `COMPLEX_KEY`. Decoding views them back as
complex, so every bit comes back as it went in.
"""

from __future__ import annotations

import json

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from megalodoc.model.safetensors_bytes import safetensors_bytes

COMPLEX_KEY = "megalodoc.codec.complex"  # reserved metadata key: JSON list of complex tensor names
_COMPLEX_DTYPES = (torch.complex64, torch.complex128)


def encode_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialize named tensors (any device; copied to CPU) and string metadata to safetensors bytes."""
    if not isinstance(tensors, dict):
        raise TypeError(f"encode_state: tensors must be a dict of name -> tensor, got {type(tensors).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"encode_state: metadata must map str -> str, got {key!r}: {value!r}")
    if COMPLEX_KEY in metadata:
        raise ValueError(f"encode_state: metadata key {COMPLEX_KEY!r} is reserved by the codec")

    flat: dict[str, torch.Tensor] = {}
    complex_names: list[str] = []
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"encode_state: tensor names must be non-empty strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"encode_state: {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        tensor = tensor.detach().to("cpu")
        if tensor.dtype in _COMPLEX_DTYPES:
            complex_names.append(name)
            tensor = torch.view_as_real(tensor.resolve_conj().contiguous())  # (*S, 2)
        flat[name] = tensor.contiguous()

    full_metadata = dict(metadata)
    if complex_names:
        full_metadata[COMPLEX_KEY] = json.dumps(sorted(complex_names))
    direct = safetensors_bytes(flat, full_metadata)  # the same bytes, without the library's per-tensor cost
    if direct is not None:
        return direct
    try:
        return _canonical_header(save(flat, metadata=full_metadata))
    except (RuntimeError, ValueError, SafetensorError) as exc:
        raise ValueError(f"encode_state: safetensors could not serialize the state: {exc}") from exc


def _canonical_header(data: bytes) -> bytes:
    """The same file with its JSON header written with sorted keys. safetensors writes metadata in hash-map
    order, which changes from process to process; equal states must give equal bytes (blobs are
    content-addressed, and a resumed ingest is checked bit for bit against an uninterrupted one). The data
    section and its offsets are untouched; the header is padded with spaces to a multiple of 8 bytes."""
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + header_len :]


def decode_state(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Inverse of `encode_state`: (tensors on CPU, metadata without the codec's reserved key)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_state: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        tensors = load(data)
        metadata = _read_metadata(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ValueError(f"decode_state: not a safetensors state ({len(data)} bytes): {exc}") from exc

    complex_names = json.loads(metadata.pop(COMPLEX_KEY, "[]"))
    for name in complex_names:
        if name not in tensors:
            raise ValueError(f"decode_state: metadata lists complex tensor {name!r}, which is missing")
        real = tensors[name]
        if real.dtype not in (torch.float32, torch.float64) or real.ndim == 0 or real.shape[-1] != 2:
            raise ValueError(f"decode_state: {name!r} has shape {tuple(real.shape)} {real.dtype}, not real pairs")
        tensors[name] = torch.view_as_complex(real.contiguous())
    return tensors, metadata


def _read_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header (safetensors.torch.load does not return it)."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise ValueError(f"header length {header_len} runs past the end")
    header = json.loads(data[8 : 8 + header_len])
    return dict(header.get("__metadata__") or {})
