"""A minimal reader for R's lazy-load data (`data/Rdata.rdx` index + `data/Rdata.rdb` objects).

R packages such as janeaustenr store their data sets as XDR-serialized R objects, each one a 4-byte
big-endian length followed by a zlib stream; the index (variable name -> offset, length) is a gzipped
serialized list. This module reads the index and unserializes the character vectors. It covers the
object types data packages use (vectors, pairlists, symbols, references); anything else raises
`ValueError` naming the type.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

# R SEXP type codes (R Internals, "Serialization formats").
_NIL, _SYM, _LIST, _CLO, _ENV, _PROM, _LANG = 0, 1, 2, 3, 4, 5, 6
_CHAR, _LGL, _INT, _REAL, _CPLX, _STR, _VEC, _EXPR, _RAW = 9, 10, 13, 14, 15, 16, 19, 20, 24
_REF, _NILVALUE, _GLOBALENV, _UNBOUND, _MISSING, _BASENS, _EMPTYENV, _BASEENV = (
    255, 254, 253, 252, 251, 250, 242, 241)
_SPECIAL_CONSTANTS = {_NILVALUE, _GLOBALENV, _UNBOUND, _MISSING, _BASENS, _EMPTYENV, _BASEENV}


class _Reader:
    """Cursor over one XDR-serialized R object."""

    def __init__(self, data: bytes) -> None:
        if data[:2] != b"X\n":
            raise ValueError(f"not an XDR R serialization (header {data[:2]!r})")
        self.data, self.pos, self.refs = data, 2, []
        version = self.int()
        self.int(), self.int()  # writer R version, minimal reader version
        if version == 3:
            name_length = self.int()
            self.pos += name_length  # native encoding name, e.g. "UTF-8"
        elif version != 2:
            raise ValueError(f"unsupported R serialization version {version}")

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more ints
            hi, lo = self.int(), self.int()
            n = (hi << 32) | (lo & 0xFFFFFFFF)
        return n

    def item(self) -> object:
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in _SPECIAL_CONSTANTS:
            return None
        if kind == _REF:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == _SYM:
            name = self.item()
            self.refs.append(name)
            return name
        if kind in (_LIST, _LANG, _CLO, _PROM):
            return self._pairlist(has_attr, has_tag)
        if kind == _CHAR:
            n = self.int()
            if n == -1:
                return None  # NA_character_
            raw = self.data[self.pos : self.pos + n]
            self.pos += n
            return raw.decode("utf-8", errors="replace")
        value: object
        if kind in (_LGL, _INT):
            n = self.length()
            value = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == _REAL:
            n = self.length()
            value = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        elif kind == _CPLX:
            n = self.length()
            self.pos += 16 * n
            value = None
        elif kind in (_STR, _VEC, _EXPR):
            value = [self.item() for _ in range(self.length())]
        elif kind == _RAW:
            n = self.length()
            value = self.data[self.pos : self.pos + n]
            self.pos += n
        else:
            raise ValueError(f"unsupported R object type {kind} at byte {self.pos - 4}")
        if has_attr:
            attrs = self.item()
            if isinstance(attrs, dict) and isinstance(value, list) and isinstance(attrs.get("names"), list):
                return dict(zip(attrs["names"], value, strict=False))
        return value

    def _pairlist(self, has_attr: bool, has_tag: bool) -> dict:
        """A pairlist as {tag: value}; untagged cells get their index as key."""
        out: dict = {}
        while True:
            if has_attr:
                self.item()
            tag = self.item() if has_tag else len(out)
            out[tag] = self.item()
            flags = self.int()  # the CDR: another cell or the end
            kind = flags & 0xFF
            if kind == _NILVALUE:
                return out
            if kind not in (_LIST, _LANG):
                self.pos -= 4
                out["__cdr__"] = self.item()
                return out
            has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))


def _inflate(blob: bytes) -> bytes:
    """One lazy-load record: 4-byte big-endian length, then a zlib stream."""
    (n,) = struct.unpack(">I", blob[:4])
    data = zlib.decompress(blob[4:])
    if len(data) != n:
        raise ValueError(f"R lazy-load record inflated to {len(data)} bytes, header says {n}")
    return data


def unserialize(data: bytes) -> object:
    """Decode one XDR-serialized R object into Python lists, dicts, strings and numbers."""
    return _Reader(data).item()


def read_lazyload(rdb_path: Path) -> dict[str, object]:
    """All variables of an R lazy-load database, by name (`Rdata.rdx` must sit beside `Rdata.rdb`)."""
    rdx_path = rdb_path.with_suffix(".rdx")
    index = unserialize(gzip.decompress(rdx_path.read_bytes()))  # the index is a gzipped saveRDS file
    if not isinstance(index, dict) or not isinstance(index.get("variables"), dict):
        raise ValueError(f"{rdx_path}: no 'variables' table in the lazy-load index")
    rdb = rdb_path.read_bytes()
    out = {}
    for name, (offset, size) in index["variables"].items():
        out[name] = unserialize(_inflate(rdb[offset : offset + size]))
    return out
