"""Plain text from SWORD Bible and commentary modules (zText / zCom drivers, ZIP block compression).

A module folder holds, per testament (`ot`, `nt`): a block table (`*.bzs`/`*.czs`: offset, compressed
size, raw size as three little-endian uint32), the zlib blocks (`*.bzz`/`*.czz`) and a verse index
(`*.bzv`/`*.czv`: block, offset, size per verse; the size is uint16 in the 10-byte format and uint32 in
the 12-byte one). Entries are OSIS markup; commentaries link one entry to many verses, so an entry is
written once. Footnotes are dropped, headings and paragraphs become lines.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from pathlib import Path

_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.DOTALL)
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title>", re.DOTALL)
_PARAGRAPH = re.compile(r"<div\b[^>]*type=\"x-p\"[^>]*/>|<lb\b[^>]*/>|</?p\b[^>]*>|<br\b[^>]*/?>")
_TAG = re.compile(r"<[^>]+>")


def osis_to_text(markup: str) -> str:
    """One OSIS entry as plain text: notes dropped, titles and paragraphs on their own lines."""
    # A note sits between two words without spaces around it ("God<note>..</note>created").
    text = _NOTE.sub("\0", markup)
    text = _TITLE.sub(lambda m: "\n" + m.group(1) + "\n", text)
    text = _TAG.sub("", _PARAGRAPH.sub("\n", text))
    text = html.unescape(re.sub(r"(?<=\w)\0+(?=\w)", " ", text).replace("\0", ""))
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _blocks(table: bytes, data: bytes, where: Path) -> list[bytes]:
    out = []
    for i in range(0, len(table) - len(table) % 12, 12):
        offset, size, raw_size = struct.unpack_from("<III", table, i)
        block = zlib.decompress(data[offset : offset + size]) if size else b""
        if len(block) != raw_size:
            raise ValueError(f"{where}: block {i // 12} inflated to {len(block)} bytes, table says {raw_size}")
        out.append(block)
    return out


def _verse_index(index: bytes, blocks: list[bytes], where: Path) -> list[tuple[int, int, int]]:
    """Decode the verse index, choosing the entry width (10 or 12 bytes) under which every entry fits."""
    for width, fmt in ((12, "<III"), (10, "<IIH")):
        if len(index) % width:
            continue
        entries = [struct.unpack_from(fmt, index, i) for i in range(0, len(index), width)]
        if all(s == 0 or (b < len(blocks) and o + s <= len(blocks[b])) for b, o, s in entries):
            return entries
    raise ValueError(f"{where}: verse index of {len(index)} bytes fits neither the 10- nor the 12-byte format")


def sword_module_text(module_dir: Path) -> str:
    """All entries of a SWORD zText/zCom module in canonical order, one entry per line group."""
    entries: list[str] = []
    seen: set[tuple[str, int, int, int]] = set()
    found = False
    for testament in ("ot", "nt"):
        for prefix in ("b", "c"):  # block type: per book or per chapter
            table_path = module_dir / f"{testament}.{prefix}zs"
            if not table_path.exists():
                continue
            found = True
            blocks = _blocks(table_path.read_bytes(), (module_dir / f"{testament}.{prefix}zz").read_bytes(),
                             table_path)
            index_path = module_dir / f"{testament}.{prefix}zv"
            for block, offset, size in _verse_index(index_path.read_bytes(), blocks, index_path):
                key = (testament, block, offset, size)
                if size == 0 or key in seen:
                    continue
                seen.add(key)
                text = osis_to_text(blocks[block][offset : offset + size].decode("utf-8", errors="replace"))
                if text:
                    entries.append(text)
    if not found:
        raise ValueError(f"{module_dir}: not a SWORD zText/zCom module (no ot/nt .bzs or .czs block table)")
    return "\n".join(entries)
