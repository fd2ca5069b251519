"""One end-to-end ask with the shipped default model on a real PDF (the first pages of a Debian manual)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pypdf import PdfReader

from megalodoc.app.reader import ReaderService
from megalodoc.ingest.pipeline import CancelToken

MANUAL = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")
PAGES = 7  # the ingest is cancelled once these pages are read: enough text, a few seconds


@pytest.fixture(scope="module")
def manual_service(tmp_path_factory):
    if not MANUAL.exists():
        pytest.skip(f"{MANUAL} not present (install the Debian package libtasn1-doc)")
    service = ReaderService(tmp_path_factory.mktemp("manual") / "reader.db")  # the shipped default model
    cancel = CancelToken()

    def stop_after_pages(progress) -> None:
        if progress.units_done >= PAGES:
            cancel.cancel()

    doc = service.ingest(MANUAL, on_progress=stop_after_pages, cancel=cancel)
    assert doc.status == "cancelled" and doc.committed_position > 0
    yield service, doc
    service.close()


def test_ask_the_manual_cites_the_page_that_answers(manual_service):
    service, doc = manual_service
    answer = service.ask(doc, "Is the parser case sensitive?", seed=0, sampling={"max_new_tokens": 24})
    assert answer.citations, "full-text search found nothing"
    top = answer.citations[0]
    assert top.page <= 5 <= top.page_end and "case sensitive" in top.passage
    assert top.where == ("page 5" if top.page == top.page_end else f"pages {top.page}-{top.page_end}")
    pages = PdfReader(MANUAL).pages
    page_five = " ".join(pages[4].extract_text().split())
    assert "The parser is case sensitive" in page_five  # the cited page really holds the answer
    quoted = " ".join(top.passage.split())
    cited_pages = " ".join(" ".join(pages[n - 1].extract_text().split()) for n in range(top.page, top.page_end + 1))
    assert quoted[-60:].strip() in cited_pages
    assert all(c.end <= doc.committed_position for c in answer.citations)
    pieces = list(answer)
    assert "".join(pieces) == answer.text and 1 <= len(answer.token_ids) <= 24
    assert answer.label.startswith("machine-generated")


def test_surprise_marks_garbled_text(manual_service, tmp_path):
    """Letter soup between two paragraphs of a licence: the shipped model finds it far less predictable."""
    service, _ = manual_service
    licence = Path("/usr/share/common-licenses/GPL-3")
    if not licence.exists():
        pytest.skip(f"{licence} not present")
    prose = licence.read_text()
    rng = random.Random(0)
    soup = "".join(rng.choice("qxzjkvwy#%&0123456789@") for _ in range(700))
    path = tmp_path / "mixed.txt"
    path.write_text(prose[:1800] + "\n" + soup + "\n" + prose[1800:3600])
    doc = service.ingest(path, surprise=True)
    points = service.surprise(doc)
    assert points[-1].position < doc.committed_position <= points[-1].position + service.bundle.chunk_size
    text_ids = service.store.token_ids(doc.id, 0, doc.committed_position)
    soup_start = len(service.tokenizer.encode(prose[:1800] + "\n"))
    soup_end = len(text_ids) - len(service.tokenizer.encode("\n" + prose[1800:3600]))
    C = service.bundle.chunk_size
    inside = [p.bits_per_byte for p in points if soup_start <= p.position and p.position + C <= soup_end]
    outside = [p.bits_per_byte for p in points if p.position + C <= soup_start or p.position >= soup_end]
    assert inside and outside
    assert min(inside) > 2 * max(outside), (inside, outside)
