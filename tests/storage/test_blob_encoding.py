"""Lossless encodings of state blobs at rest: exact round trips, smaller float data, damage detected."""

from __future__ import annotations

import struct
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_testkit import MODEL, new_document, raw_execute

from megalodoc.storage import open_store
from megalodoc.storage.blob_encoding import ENCODINGS, BlobDecodeError, decode_blob, encode_blob


def float_state_bytes(n: int = 8192, seed: int = 0) -> bytes:
    """float32 values like a model state's (normal, a few orders of magnitude), as stored bytes."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g))
    return values.numpy().tobytes()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(ENCODINGS))
def test_any_bytes_round_trip(data: bytes, encoding: str) -> None:
    assert decode_blob(encode_blob(data, encoding), encoding, len(data)) == data


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 4097])
def test_lengths_around_the_word_size_round_trip(size: int) -> None:
    data = float_state_bytes(2048)[:size]
    assert decode_blob(encode_blob(data, "planes4"), "planes4", size) == data


def test_float_data_is_stored_smaller_and_random_bytes_not_larger_than_a_few_headers() -> None:
    floats = float_state_bytes()
    assert len(encode_blob(floats, "planes4")) < 0.9 * len(floats)
    noise = bytes(torch.randint(0, 256, (10_000,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8))
    assert len(encode_blob(noise, "planes4")) <= len(noise) + 4 * 5
    assert encode_blob(floats, "raw") == floats


def plane_methods(stored: bytes) -> list[int]:
    """The method byte (0 stored, 1 coded) of each of the 4 planes of a planes4 encoding."""
    methods, offset = [], 0
    for _ in range(4):
        method, length = struct.unpack_from("<BI", stored, offset)
        methods.append(method)
        offset += 5 + length
    return methods


def test_skipping_planes_whose_last_bytes_do_not_shrink_stores_what_coding_every_plane_stores():
    """The three low bytes of float32 words are near-random: their last 4 KiB do not shrink, so the
    encoder stores them without coding the rest. That must cost nothing in size: the result is exactly
    what coding every plane and keeping the smaller form gives (sign and exponent plane coded)."""
    floats = float_state_bytes(32_768)
    stored = encode_blob(floats, "planes4")
    assert plane_methods(stored) == [0, 0, 0, 1]
    everything = 0
    for i in range(4):
        plane = floats[i::4]
        coder = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
        everything += 5 + min(len(plane), len(coder.compress(plane) + coder.flush()))
    assert len(stored) == everything  # the same layout and payloads, so the same length
    assert decode_blob(stored, "planes4", len(floats)) == floats


def test_damaged_encodings_raise() -> None:
    data = float_state_bytes(1024)
    stored = encode_blob(data, "planes4")
    for bad, size in [(stored[:-5], len(data)), (stored, len(data) + 4), (stored + b"x", len(data)), (b"\x07", 4)]:
        with pytest.raises(BlobDecodeError):
            decode_blob(bad, "planes4", size)
    with pytest.raises(ValueError, match="unknown state blob encoding"):
        encode_blob(data, "zip")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_store_keeps_blobs_under_its_encoding_and_reads_every_encoding(tmp_path, encoding: str) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    data = float_state_bytes()
    with open_store(url, state_encoding=encoding) as store:
        document = new_document(store)
        info = store.add_snapshot(document.id, 64, data, MODEL, 1)
        assert info.size_bytes == len(data)
    [(stored_encoding, stored_length)] = raw_execute(url, "SELECT encoding, length(data) FROM state_blobs")
    assert stored_encoding == encoding
    assert (stored_length < 0.9 * len(data)) if encoding == "planes4" else stored_length == len(data)
    other = next(e for e in ENCODINGS if e != encoding)
    with open_store(url, state_encoding=other) as store:  # a store writing another encoding reads this one
        assert store.load_snapshot_bytes(info.id) == data
        assert store.check_integrity() == []
    with pytest.raises(ValueError, match="unknown state blob encoding"):
        open_store(url, state_encoding="zip")
