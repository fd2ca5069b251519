"""HTML to readable text with the standard library's html.parser, fed block by block.

Script, style, template and noscript content is dropped, and so is the navigation chrome of generated
manuals (DocBook/Publican navigation bars and the per-page tables of contents that repeat on every page,
found by class or id); block elements become line breaks (paragraphs and headings a blank line); list
items start with "- "; whitespace collapses outside <pre>; character references are decoded.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser

SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript"})
PARAGRAPH_TAGS = frozenset({
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl", "hr",
    "figure", "title", "address",
})
LINE_TAGS = frozenset({
    "br", "div", "li", "tr", "dt", "dd", "section", "article", "header", "footer", "nav", "aside", "main",
    "caption", "figcaption", "form", "fieldset", "legend", "details", "summary", "body", "html", "head",
})
CELL_TAGS = frozenset({"td", "th"})
CHROME_CLASSES = frozenset({"navheader", "navfooter", "docnav", "toc", "lot"})
"""Classes of navigation bars and repeated tables of contents (DocBook, Publican); never document text."""
CHROME_IDS = frozenset({"banner"})
"""Ids of page banners (Publican) that repeat on every page of a manual."""
VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                       "track", "wbr"})
_WHITESPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_ASCII_PROBE = bytes(b for b in range(0x20, 0x7F) if b != 0x5C) + b"\t\n\r" + b"\\n\\u0041"
"""Printable ASCII, line controls and two backslash escapes: an ASCII-compatible encoding decodes them as
ASCII does; the escape codecs (unicode_escape, raw_unicode_escape) turn the escapes into other text."""
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html)[\s>]", re.IGNORECASE | re.DOTALL)


def looks_like_html(head: bytes) -> bool:
    """Whether a file's first bytes open an HTML document."""
    return _HTML_START.match(head.lstrip(b"\xef\xbb\xbf")) is not None


def declared_charset(head: bytes) -> str | None:
    """The charset of a <meta> tag in ``head``, as browsers read it (latin-1 and ASCII mean cp1252).

    Only an ASCII-compatible text encoding counts (the tag itself was read as ASCII): a label of anything
    else (UTF-16 and UTF-32, which browsers also ignore in a meta tag; EBCDIC; bytes-to-bytes codecs such
    as base64 or zlib) gives None, and the file's encoding is detected as without a tag.
    """
    match = _META_CHARSET.search(head)
    if match is None:
        return None
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
        ascii_compatible = _ASCII_PROBE.decode(name) == _ASCII_PROBE.decode("ascii")
    except (LookupError, ValueError):  # unknown, not a text encoding (LookupError), or fails on ASCII
        return None
    if not ascii_compatible:
        return None
    return "cp1252" if name in ("latin-1", "iso8859-1", "ascii") else name


class HtmlTextExtractor(HTMLParser):
    """Incremental HTML -> text. ``feed`` text, then ``take`` what is ready; ``close`` ends the text
    with one newline."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skip_depth = 0
        self._chrome: list[str] = []  # open tags inside a skipped chrome element (the first is its root)
        self._pre_depth = 0
        self._breaks = 0  # newlines owed before the next text
        self._space = False  # a space owed before the next text
        self._prefix = ""  # list marker owed before the next text
        self._started = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._chrome or _is_chrome(attrs):
            if tag not in VOID_TAGS:
                self._chrome.append(tag)
            return
        if tag in SKIPPED_TAGS:
            self._skip_depth += 1
            return
        self._block(tag)
        if tag == "pre":
            self._pre_depth += 1
        elif tag == "li":
            self._prefix = "- "
        elif tag in CELL_TAGS:
            self._space = True

    def handle_endtag(self, tag: str) -> None:
        if self._chrome:
            # Close up to the matching open tag (tolerates unclosed children such as <p> or <li>).
            if tag in self._chrome:
                while self._chrome.pop() != tag:
                    pass
            return
        if tag in SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
        self._block(tag)

    def handle_data(self, data: str) -> None:
        if self._skip_depth or self._chrome:
            return
        if self._pre_depth:
            if data:
                self._emit(data)
            return
        collapsed = _WHITESPACE.sub(" ", data)
        words = collapsed.strip(" ")
        if collapsed.startswith(" "):
            self._space = True
        if words:
            self._emit(words)
            self._space = collapsed.endswith(" ")

    def _block(self, tag: str) -> None:
        if tag in PARAGRAPH_TAGS:
            self._breaks = max(self._breaks, 2)
        elif tag in LINE_TAGS:
            self._breaks = max(self._breaks, 1)

    def _emit(self, text: str) -> None:
        if self._started:
            if self._breaks:
                self._out.append("\n" * self._breaks)
            elif self._space:
                self._out.append(" ")
        self._out.append(self._prefix + text)
        self._started = True
        self._breaks = 0
        self._space = False
        self._prefix = ""

    def take(self) -> str:
        """The text produced since the last call."""
        text = "".join(self._out)
        self._out.clear()
        return text

    def close(self) -> None:
        super().close()
        if self._started:
            self._out.append("\n")


def _is_chrome(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if name == "class" and value and not CHROME_CLASSES.isdisjoint(value.lower().split()):
            return True
        if name == "id" and value and value.lower() in CHROME_IDS:
            return True
    return False


def html_to_text(blocks: Iterable[str]) -> Iterator[str]:
    """Stream the readable text of an HTML document given as decoded blocks."""
    parser = HtmlTextExtractor()
    for block in blocks:
        parser.feed(block)
        text = parser.take()
        if text:
            yield text
    parser.close()
    text = parser.take()
    if text:
        yield text
