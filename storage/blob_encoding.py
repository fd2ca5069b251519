"""Lossless encodings of state blobs at rest; the store hands back exactly the bytes it was given.

A state blob is mostly float32 words (complex values are stored as float32 pairs). Their mantissa bytes
are close to random, but the byte holding the sign and the high exponent bits takes few values, so a
general-purpose compressor over the interleaved bytes saves about 7%, while splitting the words into
byte planes and entropy-coding each plane saves about 14% (measured on states of the shipped model, see
bench/snapshots.py):

- "raw": the bytes as given.
- "planes4": the first len // 4 * 4 bytes split into 4 byte planes (plane i holds byte i of every 4-byte
  word); each plane is Huffman-coded with zlib (no string matching, which finds nothing in float data
  and costs time) and kept coded only when that is smaller; the last len % 4 bytes follow unchanged.
  A plane whose last 4 KiB do not get smaller when coded is stored as it is, without coding the rest
  (the last bytes, not the first: a state starts with its JSON header, text that always shrinks). In
  float32 states the three low bytes of every word are near-random mantissa bits that never shrink;
  coding them took about 0.35 ms of each snapshot write for nothing (the plane of sign and high exponent
  bits shrinks by about 56%).
  Layout: per plane, 1 byte (0 stored, 1 deflated) + 4 bytes little-endian length + payload; then the
  remainder. Encoding a 134 KB state takes about 0.4 ms on one CPU core.

The sha256 that names a blob is always that of the original bytes, and every read checks it after
decoding, so an encoding can never hand back wrong state.
"""

from __future__ import annotations

import struct
import zlib

RAW = "raw"
PLANES4 = "planes4"
ENCODINGS = (RAW, PLANES4)
DEFAULT_ENCODING = PLANES4

_WORD = 4
_STORED, _DEFLATED = 0, 1
_PLANE_HEADER = struct.Struct("<BI")
_SAMPLE = 4096  # bytes at the end of a plane coded first, to skip coding a plane that will not shrink


class BlobDecodeError(ValueError):
    """Stored bytes that do not decode under their recorded encoding (damaged at rest)."""


def check_encoding(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown state blob encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    return encoding


def _huffman(data: bytes) -> bytes:
    coder = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    return coder.compress(data) + coder.flush()


def encode_blob(data: bytes, encoding: str) -> bytes:
    """The bytes to store for `data` under `encoding`."""
    if check_encoding(encoding) == RAW:
        return bytes(data)
    data = bytes(data)
    whole = len(data) // _WORD * _WORD
    parts = []
    for i in range(_WORD):
        plane = data[i:whole:_WORD]  # (words,) byte i of every word
        shrinks = len(plane) <= _SAMPLE or len(_huffman(plane[-_SAMPLE:])) < _SAMPLE
        coded = _huffman(plane) if shrinks else plane
        method, payload = (_DEFLATED, coded) if len(coded) < len(plane) else (_STORED, plane)
        parts.append(_PLANE_HEADER.pack(method, len(payload)) + payload)
    parts.append(data[whole:])
    return b"".join(parts)


def decode_blob(stored: bytes, encoding: str, size: int) -> bytes:
    """The original bytes (`size` of them) of a blob stored under `encoding`; BlobDecodeError when the
    stored bytes are not a valid encoding of that many bytes."""
    if check_encoding(encoding) == RAW:
        return bytes(stored)
    stored = bytes(stored)
    words = size // _WORD
    out = bytearray(size)
    offset = 0
    try:
        for i in range(_WORD):
            method, length = _PLANE_HEADER.unpack_from(stored, offset)
            offset += _PLANE_HEADER.size
            payload = stored[offset : offset + length]
            offset += length
            if len(payload) != length or method not in (_STORED, _DEFLATED):
                raise BlobDecodeError(f"plane {i}: truncated or unknown method {method}")
            plane = zlib.decompress(payload) if method == _DEFLATED else payload
            if len(plane) != words:
                raise BlobDecodeError(f"plane {i} holds {len(plane)} bytes, expected {words}")
            out[i : words * _WORD : _WORD] = plane
    except (struct.error, zlib.error) as exc:
        raise BlobDecodeError(f"damaged {encoding} blob: {exc}") from exc
    rest = stored[offset:]
    if len(rest) != size - words * _WORD:
        raise BlobDecodeError(f"{encoding} blob has {len(rest)} trailing bytes, expected {size - words * _WORD}")
    out[words * _WORD :] = rest
    return bytes(out)
