"""Binary sniffing, codec choice, newline normalisation and piece splitting."""

from __future__ import annotations

import codecs
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from megalodoc.ingest.sources.decoding import (
    NewlineNormalizer,
    decode_bytes,
    iter_decoded,
    scan_file,
    sniff_binary,
)
from megalodoc.ingest.sources.splitting import split_blocks


def test_sniff_binary():
    assert sniff_binary(b"plain text\n\twith tabs\r\n") is None
    assert sniff_binary("naïve".encode("latin-1")) is None
    assert sniff_binary("wide".encode("utf-16")) is None  # BOM: text despite NULs
    assert sniff_binary(b"abc\x00def") == "binary file (NUL byte at offset 3)"
    assert sniff_binary(bytes([1, 2, 3]) * 10 + b"text") == "binary file (88% control bytes in the first 34 bytes)"


def test_decode_bytes_fallbacks():
    assert decode_bytes("é".encode()) == ("é", "utf-8")
    assert decode_bytes(codecs.BOM_UTF8 + b"x") == ("x", "utf-8-sig")
    assert decode_bytes(b"\xe9t\xe9") == ("été", "cp1252")
    assert decode_bytes(b"\x81") == ("\x81", "latin-1")


def test_scan_file_streams_across_blocks(tmp_path: Path):
    path = tmp_path / "big.txt"
    # a two-byte character straddles the 1 MiB block boundary: still valid UTF-8
    data = b"a" * ((1 << 20) - 1) + "é".encode() + b"\n"
    path.write_bytes(data)
    scan = scan_file(path)
    assert (scan.encoding, scan.size, scan.has_text) == ("utf-8", len(data), True)
    path.write_bytes(b" " * (1 << 20) + b"\xe9\n")
    scan = scan_file(path)
    assert (scan.encoding, scan.has_text) == ("cp1252", True)
    assert "".join(iter_decoded(path, scan.encoding)).endswith("é\n")


@given(st.lists(st.text(alphabet="ab\r\n", max_size=8), max_size=12))
def test_newline_normalizer_matches_whole_string(blocks: list[str]):
    normalizer = NewlineNormalizer()
    streamed = "".join(normalizer.feed(block) for block in blocks) + normalizer.finish()
    whole = "".join(blocks)
    assert streamed == whole.replace("\r\n", "\n").replace("\r", "\n")


@given(st.lists(st.text(alphabet="ab \n", max_size=40), max_size=20), st.integers(1, 30))
def test_split_blocks_loses_nothing(blocks: list[str], target: int):
    pieces = list(split_blocks(blocks, target))
    assert "".join(pieces) == "".join(blocks)
    assert all(pieces)
    for piece in pieces[:-1]:
        assert len(piece) <= 4 * target + 1
