"""Plain text from DocBook-style HTML manuals, in reading order.

Whitespace is rendered the way a browser would (runs collapsed outside `<pre>`, kept exactly inside);
block elements start new lines; navigation bars, repeated tables of contents, scripts and styles are
dropped. Pages are read by following the `<link rel="next">` chain from the index page, so a manual
becomes one continuous document; pages the chain never reaches follow in path order.
"""

from __future__ import annotations

import html.parser
import re
from pathlib import Path

# Elements that begin a new line, and those that also leave a blank line after them.
_BLOCK = {"div", "br", "li", "tr", "dt", "dd", "table", "ul", "ol", "dl", "blockquote", "pre", "hr"}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "title"}
# Containers whose content is never text of the manual.
_SKIP_TAGS = {"script", "style", "head"}
# DocBook/publican classes and ids of navigation chrome and per-page tables of contents.
_SKIP_CLASSES = {"navheader", "navfooter", "docnav", "toc", "lot"}
_SKIP_IDS = {"banner", "title"}
_VOID = {"br", "hr", "img", "link", "meta", "input", "area", "base", "col", "wbr"}


class _TextParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_stack: list[str] = []  # open tags inside a skipped element (the first one is its root)
        self.pre_depth = 0
        self.at_line_start = True
        self.next_href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: (v or "") for k, v in attrs}
        if tag == "link" and values.get("rel", "").lower() == "next" and self.next_href is None:
            self.next_href = values.get("href")
        if self.skip_stack:
            if tag not in _VOID:
                self.skip_stack.append(tag)
            return
        classes = set(values.get("class", "").lower().split())
        if tag in _SKIP_TAGS or classes & _SKIP_CLASSES or values.get("id", "").lower() in _SKIP_IDS:
            if tag not in _VOID:
                self.skip_stack.append(tag)
            return
        if tag == "pre":
            self.pre_depth += 1
        if tag in _BLOCK or tag in _PARAGRAPH:
            self._newline("\n")

    def _newline(self, breaks: str) -> None:
        self.parts.append(breaks)
        self.at_line_start = True

    def handle_endtag(self, tag: str) -> None:
        if self.skip_stack:
            # Close up to the matching open tag (tolerates unclosed children such as <p> or <li>).
            if tag in self.skip_stack:
                while self.skip_stack and self.skip_stack.pop() != tag:
                    pass
            return
        if tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        if tag in _PARAGRAPH:
            self._newline("\n\n")
        elif tag in _BLOCK:
            self._newline("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_stack:
            return
        if self.pre_depth:
            text = data
        else:
            text = re.sub(r"\s+", " ", data)
            if self.at_line_start:
                text = text.lstrip(" ")
        if text:
            self.parts.append(text)
            self.at_line_start = text.endswith("\n")


def _tidy(text: str) -> str:
    """Strip spaces at line ends, keep at most one blank line."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def html_page_text(source: str) -> tuple[str, str | None]:
    """(text of one HTML page, href of its rel="next" page or None)."""
    parser = _TextParser()
    parser.feed(source)
    parser.close()
    return _tidy("".join(parser.parts)), parser.next_href


def html_manual_text(folder: Path, index_name: str = "index.html") -> str:
    """One manual: every `*.html` page under `folder`, in `rel="next"` order from `index_name`."""
    pages = sorted(p for p in folder.rglob("*.html") if p.is_file())
    if not pages:
        raise ValueError(f"{folder}: no .html pages")
    texts: dict[Path, tuple[str, str | None]] = {}

    def read(page: Path) -> tuple[str, str | None]:
        if page not in texts:
            texts[page] = html_page_text(page.read_text(encoding="utf-8", errors="replace"))
        return texts[page]

    by_resolved = {p.resolve(): p for p in pages}
    order: list[Path] = []
    seen: set[Path] = set()
    page = by_resolved.get((folder / index_name).resolve())
    while page is not None and page not in seen:
        order.append(page)
        seen.add(page)
        href = read(page)[1]
        page = by_resolved.get((page.parent / href.split("#")[0]).resolve()) if href else None
    order += [p for p in pages if p not in seen]
    return "\n\n".join(t for t in (read(p)[0] for p in order) if t)
