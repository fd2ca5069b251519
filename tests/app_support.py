"""Helpers for the app tests: real PDFs made with reportlab, and the web app launched on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

TOPICS = ["gardens and roses", "rivers and bridges", "lighthouses and keepers", "markets and bread"]


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF with one page per entry, one drawn line per string (reportlab)."""
    pdf = canvas.Canvas(str(path), pagesize=A4)
    for lines in pages:
        pdf.setFont("Helvetica", 11)
        for row, line in enumerate(lines):
            pdf.drawString(60, 800 - 14 * row, line)
        pdf.showPage()
    pdf.save()
    return path


def atlas_pages(lines_per_page: int = 12) -> list[list[str]]:
    """Four pages about different things; page 3 alone speaks of lighthouses."""
    return [[f"Page {n} is about {topic}; line {line} says more about {topic.split()[0]}."
             for line in range(lines_per_page)] for n, topic in enumerate(TOPICS, 1)]


@contextmanager
def running_app(service: Any, data_dir: Path, max_upload_mb: float = 5) -> Iterator[tuple[Any, str]]:
    """(demo, url) of the app over `service` on 127.0.0.1, closed afterwards."""
    from megalodoc.app.ui.build import build_ui, launch

    demo = build_ui(service, data_dir, max_upload_mb)
    _, url, _ = launch(demo, prevent_thread_lock=True, quiet=True)
    try:
        yield demo, url
    finally:
        demo.close()
