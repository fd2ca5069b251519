"""Helpers for the app tests: real PDFs made with reportlab, and the web app launched on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
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


SERVE_STARTUP_SECONDS = 120.0  # importing gradio and torch on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(model_dir: Path, folder: Path) -> Iterator[tuple[subprocess.Popen, str, Path, Path]]:
    """`megalodoc serve` started as a person would (FOLDER/library.db, FOLDER/data, run from FOLDER) on a
    free port, answering; yields (process, url, database, log). Killed if the caller leaves it running."""
    import httpx

    port = free_port()
    db = folder / "library.db"
    command = [sys.executable, "-m", "megalodoc.app.cli", "serve", "--db", str(db), "--model", str(model_dir),
               "--port", str(port), "--data-dir", str(folder / "data"), "--threads", "1"]
    log = folder / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
        try:
            deadline = time.monotonic() + SERVE_STARTUP_SECONDS
            while True:
                assert server.poll() is None, log.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not answer: " + log.read_text()
                time.sleep(0.5)
            yield server, f"http://127.0.0.1:{port}/", db, log
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
