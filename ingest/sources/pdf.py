"""PDF documents: one piece per page, in page order, with the page number as locator.

Each page's text is cleaned (``ingest.normalize.clean_pdf_text``) and, when not empty, followed by a
blank line ("\\n\\n") that separates it from the next page; a page without text yields an empty piece
so that piece index == page number - 1. Pages are extracted by worker processes ahead of the consumer
(see ``pdf_workers``); small PDFs, or ``pdf_workers=0``, are extracted in the calling process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .errors import ExtractionError, NoTextLayerError
from .pdf_extract import PageText, extract_page, has_text_objects, open_pdf
from .pdf_workers import PageStream
from .types import Locator, Notice, Source, SourceOptions, TextPiece

READER_VERSION = 1
"""Bump when the text stream of an unchanged PDF would change (cleaning rules, page separator)."""

PAGE_SEPARATOR = "\n\n"
OCR_HINT = "it needs OCR (for example `ocrmypdf in.pdf out.pdf`) before its text can be read"


class PdfSource(Source):
    """An opened PDF. Open it with :func:`open_source`."""

    kind = "pdf"

    def __init__(self, path: Path, content_hash: str, options: SourceOptions) -> None:
        super().__init__(path, path.name, content_hash, options)
        reader = open_pdf(path)
        self.page_count = len(reader.pages)
        options.caps.check_pages(path, self.page_count)
        self.unit_name = "page"
        self.unit_count = self.page_count
        if not has_text_objects(reader):
            raise NoTextLayerError(path, f"none of its {self.page_count} pages has a text layer (images or "
                                         f"drawings only); {OCR_HINT}")

    @property
    def stream_version(self) -> str:
        return f"pdf/{READER_VERSION}"

    def _pages(self, first: int) -> Iterator[PageText]:
        pages = range(first, self.page_count)
        options = self.options
        if options.pdf_workers == 0 or len(pages) < options.pdf_in_process_below:
            reader = open_pdf(self.path, self.content_hash)
            for index in pages:
                yield extract_page(reader, index)
            return
        stream = PageStream(self.path, self.content_hash, pages, workers=options.pdf_workers,
                            pages_per_task=options.pdf_pages_per_task, tasks_ahead=options.pdf_tasks_ahead)
        try:
            yield from stream
        finally:
            stream.close()

    def pieces(self, start: int = 0) -> Iterator[TextPiece]:
        blank: list[int] = []
        failed: list[str] = []
        for page in self._pages(start):
            for message in page.warnings:
                self._note(f"page {page.page}: pypdf: {message}")
            if page.error is not None:
                failed.append(f"page {page.page}: text extraction failed ({page.error})")
                self._note(f"{failed[-1]}; the page is left out")
            elif not page.text.strip():
                blank.append(page.page)
            text = page.text + PAGE_SEPARATOR if page.text else ""
            yield TextPiece(text, Locator.for_page(page.page), page.page - 1)
        if start == 0 and len(blank) + len(failed) == self.page_count:
            if failed:
                raise ExtractionError(self.path, f"no page could be read: {len(failed)} of {self.page_count} "
                                                 f"failed, e.g. {failed[0]}")
            raise NoTextLayerError(self.path, f"none of its {self.page_count} pages has extractable text; "
                                              f"{OCR_HINT}")
        if blank:
            self._note(f"no text on {len(blank)} of {self.page_count - start} pages ({_ranges(blank)}): "
                       f"blank, or images that need OCR")

    def _note(self, reason: str) -> None:
        notice = Notice(str(self.path), reason)
        if notice not in self.warnings:
            self.warnings.append(notice)


def _ranges(pages: list[int]) -> str:
    """"1-3, 7, 9-10" for [1, 2, 3, 7, 9, 10]."""
    spans: list[str] = []
    first = last = pages[0]
    for page in pages[1:] + [0]:
        if page == last + 1:
            last = page
            continue
        spans.append(f"{first}-{last}" if last > first else str(first))
        first = last = page
    label = "pages" if len(pages) > 1 else "page"
    return f"{label} {', '.join(spans)}"
