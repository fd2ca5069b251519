"""A safetensors file written directly, for the small states stored at every snapshot.

`safetensors.torch.save` spends most of its time on a state's 28 small tensors in per-tensor Python
checks and conversions (about 0.5 ms a state on one CPU core); the format itself is an 8-byte header
length, a JSON header and the tensors' bytes. This writer produces the same bytes as the library followed
by `tensor_codec._canonical_header` (the test compares them): tensors laid out by dtype, widest type
first (safetensors' own order), then by name; the header's keys sorted, compact, padded with spaces to a
multiple of 8 bytes. It returns None for what it does not cover (a dtype outside its table, a big-endian
machine), and the caller then uses the library.
"""

from __future__ import annotations

import json
import sys

import torch

# torch dtype -> (safetensors dtype name, its place in safetensors' order of dtypes; larger comes first)
_DTYPES: dict[torch.dtype, tuple[str, int]] = {
    torch.bool: ("BOOL", 0),
    torch.uint8: ("U8", 1),
    torch.int8: ("I8", 2),
    torch.int16: ("I16", 3),
    torch.float16: ("F16", 4),
    torch.bfloat16: ("BF16", 5),
    torch.int32: ("I32", 6),
    torch.float32: ("F32", 7),
    torch.float64: ("F64", 8),
    torch.int64: ("I64", 9),
}


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes | None:
    """The canonical safetensors bytes of contiguous CPU `tensors` and `metadata`, or None when a tensor's
    dtype is not in the table above or the machine is big-endian (the format is little-endian)."""
    if sys.byteorder != "little" or any(t.dtype not in _DTYPES for t in tensors.values()):
        return None
    order = sorted(tensors, key=lambda name: (-_DTYPES[tensors[name].dtype][1], name))
    header: dict[str, object] = {"__metadata__": metadata}
    parts: list[bytes] = []
    offset = 0
    for name in order:
        tensor = tensors[name]
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()  # (numel * itemsize,) raw bytes
        header[name] = {"data_offsets": [offset, offset + len(data)], "dtype": _DTYPES[tensor.dtype][0],
                        "shape": list(tensor.shape)}
        parts.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(parts)
