"""Byte-level helpers: binary sniffing, encoding choice with a recorded fallback, newline normalisation."""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .path_checks import open_binary

SNIFF_BYTES = 8192
"""Bytes inspected to decide text or binary (git looks at the first 8000 for NULs)."""

CONTROL_RATIO_LIMIT = 0.10
"""More than this share of C0 control bytes (other than tab, newlines, form feed, backspace, escape)
in the sniffed head means binary; text files practically never carry any."""

READ_BLOCK = 1 << 20
"""Block size for streaming reads (1 MiB)."""

FALLBACK_ENCODINGS = ("cp1252", "latin-1")
"""Tried in order when a file is not valid UTF-8. latin-1 decodes any byte, so decoding never fails."""

_BOMS = (  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\b\x1b")
_CONTROL_BYTES = bytes(b for b in range(32) if b not in _TEXT_CONTROLS) + b"\x7f"
_SPACE_BYTES = b" \t\r\n\f\v"
_HIGH_BYTES = bytes(range(0x80, 0x100))
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"))
"""Soft hyphen, Mongolian vowel separator, zero-width space/joiners, word joiner, BOM: show nothing."""


def bom_encoding(head: bytes) -> str | None:
    """The codec named by a byte-order mark at the start of ``head``, or None."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return None


def utf16_without_bom(head: bytes) -> str | None:
    """"utf-16-le" / "utf-16-be" when ``head`` reads as UTF-16 text without a byte-order mark: nearly every
    high (or low) byte of its code units is NUL, as in mostly-Latin text, and the other bytes are not."""
    sample = head[: len(head) & ~1]
    if len(sample) < 8:
        return None
    low, high = sample[0::2], sample[1::2]
    units = len(low)
    for zeros, others, name in ((high, low, "utf-16-le"), (low, high, "utf-16-be")):
        if zeros.count(0) >= 0.9 * units and others.count(0) <= 0.01 * units:
            return name
    return None


def sniff_binary(head: bytes) -> str | None:
    """Why ``head`` (the first bytes of a file) looks binary, or None if it looks like text."""
    if not head or bom_encoding(head) in ("utf-16", "utf-32") or utf16_without_bom(head):
        return None
    nul = head.find(b"\0")
    if nul >= 0:
        return f"binary file (NUL byte at offset {nul})"
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if controls > CONTROL_RATIO_LIMIT * len(head):
        return f"binary file ({100 * controls / len(head):.0f}% control bytes in the first {len(head)} bytes)"
    return None


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode a whole file: BOM codec (or UTF-16 recognised without one), else UTF-8, else cp1252, else
    latin-1. Returns (text, codec). Raises UnicodeDecodeError when the bytes contradict their BOM."""
    encoding = bom_encoding(data) or utf16_without_bom(data[:SNIFF_BYTES])
    if encoding is not None:
        return data.decode(encoding), encoding
    for encoding in ("utf-8", *FALLBACK_ENCODINGS):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def has_visible_bytes(data: bytes) -> bool:
    """Whether ``data`` holds anything but ASCII whitespace."""
    return bool(data.translate(None, _SPACE_BYTES))


def has_visible_ascii(data: bytes) -> bool:
    """Whether ``data`` holds an ASCII byte that is not whitespace (bytes >= 0x80 are not judged here)."""
    return bool(data.translate(None, _SPACE_BYTES + _HIGH_BYTES))


def has_visible_text(text: str) -> bool:
    """Whether ``text`` holds a character that shows: not whitespace (Unicode's, e.g. no-break and
    ideographic spaces, line and paragraph separators) and not an invisible format character."""
    return bool(text.translate(_INVISIBLE).strip())


@dataclass(frozen=True)
class FileScan:
    """One streaming pass over a file: its hash, size, first bytes, the codec to decode it with and
    whether anything but whitespace is in it."""

    sha256: str
    size: int
    head: bytes
    encoding: str
    has_text: bool
    problem: str | None = None
    """Why the bytes cannot be decoded as they claim (a byte-order mark they contradict), or None."""


def scan_file(path: Path, declared: str | None = None) -> FileScan:
    """Hash ``path`` and choose its codec in one streaming pass (constant memory).

    Codec order: a byte-order mark's (or UTF-16 recognised without one); else ``declared`` (e.g. an HTML
    meta charset), UTF-8, cp1252, latin-1, keeping the first under which the whole file decodes. A file
    whose byte-order mark (or UTF-16 look) its bytes then contradict gets ``problem`` set.
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    has_text = False
    high = False  # bytes >= 0x80 seen: whether they are visible is decided on the decoded text
    candidates: list[str] = []
    checked: list[str] = []  # the candidates that must be verified (all but a final catch-all)
    decoders: dict[str, codecs.IncrementalDecoder] = {}
    wide: codecs.IncrementalDecoder | None = None  # UTF-16/32 files: whitespace check on decoded text
    marked: str | None = None
    with open_binary(path) as handle:
        while block := handle.read(READ_BLOCK):
            if not size:
                head = block[:SNIFF_BYTES]
                marked = bom_encoding(head) or utf16_without_bom(head)
                if marked:
                    candidates, checked = [marked], [marked]
                else:
                    candidates = list(dict.fromkeys([name for name in (declared, "utf-8", *FALLBACK_ENCODINGS)
                                                     if name]))
                    checked = candidates[:-1]  # the last candidate decodes anything: always kept
                decoders = {name: codecs.getincrementaldecoder(name)() for name in candidates}
                if marked and marked != "utf-8-sig":
                    wide = codecs.getincrementaldecoder(marked)(errors="replace")
            digest.update(block)
            size += len(block)
            for name in list(checked):
                try:
                    decoders[name].decode(block)
                except UnicodeDecodeError:
                    checked.remove(name)
                    candidates.remove(name)
            if not has_text:
                if wide:
                    has_text = has_visible_text(wide.decode(block))
                else:
                    has_text = has_visible_ascii(block)
                    high = high or len(block.translate(None, _HIGH_BYTES)) < len(block)
    for name in list(checked):
        try:
            decoders[name].decode(b"", final=True)
        except UnicodeDecodeError:
            checked.remove(name)
            candidates.remove(name)
    if marked and not candidates:
        problem = f"looks like {marked} (byte-order mark or byte pattern) but is not valid {marked}"
        return FileScan(digest.hexdigest(), size, head, marked, has_text, problem)
    encoding = candidates[0] if candidates else "utf-8"
    if not has_text and high:  # only whitespace and non-ASCII so far: look at the characters
        has_text = any(has_visible_text(text) for text in iter_decoded(path, encoding))
    return FileScan(digest.hexdigest(), size, head, encoding, has_text)


def iter_decoded(path: Path, encoding: str) -> Iterator[str]:
    """Yield the text of ``path`` decoded with ``encoding`` in blocks, newlines normalised to "\\n"."""
    decoder = codecs.getincrementaldecoder(encoding)()
    newlines = NewlineNormalizer()
    with open_binary(path) as handle:
        while block := handle.read(READ_BLOCK):
            text = newlines.feed(decoder.decode(block))
            if text:
                yield text
    tail = newlines.feed(decoder.decode(b"", final=True)) + newlines.finish()
    if tail:
        yield tail


class NewlineNormalizer:
    """Turns "\\r\\n" and lone "\\r" into "\\n" across block boundaries."""

    def __init__(self) -> None:
        self._pending_cr = False

    def feed(self, text: str) -> str:
        """Normalise a block; a trailing "\\r" is held back until the next block shows what follows."""
        if self._pending_cr:
            text = "\r" + text
            self._pending_cr = False
        if text.endswith("\r"):
            text = text[:-1]
            self._pending_cr = True
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text

    def finish(self) -> str:
        """What is still held back at the end of the stream."""
        pending, self._pending_cr = self._pending_cr, False
        return "\n" if pending else ""
