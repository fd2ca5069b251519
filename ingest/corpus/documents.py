"""Text of the corpus's documents, made by the product's own source readers (`open_source`).

Each work is a document a user could ingest (a text file, an HTML page, a repository folder), so its
corpus text is exactly the text stream `megalodoc ingest` stores for it. Text that comes out of a data
format (R data sets, SWORD modules, a compressed file) is first written as a plain text file under the
build's staging folder and read back the same way. Manuals made of many pages or files join their
documents' texts in reading order, one blank line apart.

The caps on runaway inputs (`IngestCaps`) guard `megalodoc ingest` against what a user hands it; the
corpus is a fixed recipe of known works, some larger than the default caps (a commentary of 11.8 MB), so
it reads with the caps off. Caps decide whether an input is read, never how: the text is the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

from ..sources import EmptySourceError, IngestCaps, SourceOptions, open_source

log = logging.getLogger(__name__)


def read_document(path: Path) -> str:
    """The text stream `megalodoc ingest` makes of `path` (a file or a repository folder), with no cap on
    its size."""
    with open_source(path, SourceOptions(caps=IngestCaps.unlimited())) as source:
        for notice in source.skipped:
            log.info("%s: skipped %s", path, notice)
        for notice in source.warnings:
            log.info("%s: %s", path, notice)
        return source.text()


def stage_text(path: Path, data: str | bytes) -> Path:
    """Write extracted text (or decompressed bytes) to `path`, for reading with `read_document`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def join_documents(texts: Iterable[str]) -> str:
    """Documents one after the other, each ending in one newline and followed by one blank line."""
    parts = [text.rstrip("\n") + "\n" for text in texts if text.strip()]
    return "\n".join(parts)


def read_documents(paths: Iterable[Path]) -> str:
    """The documents at `paths` joined in order; a file without text (empty, blank) is left out."""
    texts = []
    for path in paths:
        try:
            texts.append(read_document(path))
        except EmptySourceError as error:
            log.info("left out: %s", error)
    return join_documents(texts)


class _NextLink(HTMLParser):
    """Finds the href of a page's first `<link rel="next">`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: (v or "") for k, v in attrs}
        if tag == "link" and self.href is None and values.get("rel", "").lower() == "next":
            self.href = values.get("href")


def next_page(page: Path) -> str | None:
    """The href of an HTML page's `<link rel="next">`, or None."""
    parser = _NextLink()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser.href


def manual_pages(folder: Path, index_name: str = "index.html") -> list[Path]:
    """Every `*.html` page under `folder` in reading order: the `rel="next"` chain from `index_name`,
    then the pages the chain never reaches, in path order."""
    pages = sorted(p for p in folder.rglob("*.html") if p.is_file())
    if not pages:
        raise ValueError(f"{folder}: no .html pages")
    by_resolved = {p.resolve(): p for p in pages}
    order: list[Path] = []
    seen: set[Path] = set()
    page = by_resolved.get((folder / index_name).resolve())
    while page is not None and page not in seen:
        order.append(page)
        seen.add(page)
        href = next_page(page)
        page = by_resolved.get((page.parent / href.split("#")[0]).resolve()) if href else None
    return order + [p for p in pages if p not in seen]


def read_manual(folder: Path, index_name: str = "index.html") -> str:
    """One HTML manual: the text of each page, as ingest reads it, in reading order."""
    return read_documents(manual_pages(folder, index_name))
