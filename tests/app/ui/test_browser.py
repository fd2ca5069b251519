"""A real browser (Debian's Chromium driven by the playwright pip package; never `playwright install`)
clicks through a real `megalodoc serve` process: upload a PDF, ask, come back in a fresh browser and
resume, branch; it saves a screenshot of each step. MEGALODOC_SCREENSHOTS=DIR keeps them (the README's
picture is taken this way); MEGALODOC_UI_URL=URL drives an already running server (on a fresh library) instead."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_support import atlas_pages, serving, write_pdf
from pypdf import PdfReader, PdfWriter

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MANUAL = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")
MANUAL_PAGES = 8  # title, contents, introduction, ASN.1 syntax, utilities: enough to ask about asn1Parser
STEP_MS = 120_000  # the longest a single step (a read, an answer) may take in the browser

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: install Debian's chromium "
                                "package (.ci/run does) to run the browser test")


@pytest.fixture
def served(tiny_model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The URL of `megalodoc serve` started as a person would (tiny model, temporary SQLite file)."""
    if os.environ.get("MEGALODOC_UI_URL"):
        yield os.environ["MEGALODOC_UI_URL"].rstrip("/") + "/"
        return
    with serving(tiny_model_dir, tmp_path) as (server, url, _, _):
        yield url
        server.terminate()
        server.wait(30)


@pytest.fixture
def document(tmp_path: Path) -> tuple[Path, str, str]:
    """(PDF, question, the page its answer is on): the first pages of the libtasn1 manual when Debian's
    libtasn1-doc is installed, else a four-page reportlab PDF."""
    if MANUAL.exists():
        writer = PdfWriter()
        for page in PdfReader(MANUAL).pages[:MANUAL_PAGES]:
            writer.add_page(page)
        path = tmp_path / "libtasn1-first-pages.pdf"
        with open(path, "wb") as handle:
            writer.write(handle)
        return path, "What does asn1Parser read and generate?", "page 8"
    return write_pdf(tmp_path / "atlas.pdf", atlas_pages(8)), "Who are the keepers of lighthouses?", "page 3"


def pick(page, label: str, option: str) -> None:
    """Choose `option` (its label starts so) in the visible dropdown called `label`."""
    page.locator(f"input[aria-label='{label}']:visible").click()
    page.get_by_role("option").filter(has_text=option).first.click()
    page.get_by_role("listbox").wait_for(state="hidden")  # the list has closed (and leaves the screenshot)


def ask(page, question: str, turn: int) -> None:
    """Ask and wait until the answer is stored as turn `turn` of its session (numbered as the branch list)."""
    page.get_by_label("Question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()
    page.get_by_text(f"turn {turn} stored: resume or branch it any time").wait_for(timeout=STEP_MS)


def test_upload_ask_resume_and_branch_in_a_real_browser(served, document, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=STEP_MS)  # a busy machine: uploads and answers take seconds, not milliseconds
    pdf, question, answer_page = document
    shots = Path(os.environ.get("MEGALODOC_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(STEP_MS)
        page.goto(served)
        # Library: upload and read
        page.locator("input[type=file]").first.set_input_files(str(pdf))
        # the file list's cell (its text is split in two spans, "name" and ".pdf", so match the cell's
        # accessible name rather than one text node)
        expect(page.get_by_role("cell", name=pdf.name).first).to_be_visible()
        page.get_by_role("button", name="Read into the library").click()
        page.get_by_text(f"Read: {pdf.name}.").wait_for()
        expect(page.get_by_text("100%", exact=True).locator("visible=true").first).to_be_visible()
        page.screenshot(path=shots / "1-library.png", full_page=True)
        # Reader: a question is answered with evidence first, then an empty one is refused with a message
        page.get_by_role("tab", name="Reader").click()
        pick(page, "Document", pdf.name)
        expect(page.get_by_text("Reading point: token")).to_be_visible()
        ask(page, question, 1)
        expect(page.get_by_text("Evidence from the document")).to_be_visible()
        expect(page.locator("strong", has_text=answer_page).first).to_be_visible()
        expect(page.get_by_text("Generated text (machine-generated").first).to_be_visible()
        page.screenshot(path=shots / "2-reader-ask.png", full_page=True)
        page.get_by_label("Question").fill("")
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(page.get_by_text("the question is empty").first).to_be_visible()
        # the refusal marks only the status line: the session picker under it stays usable (an "Error"
        # mark covered every output of the event, and blocked clicks, until each was closed by hand)
        page.locator("input[aria-label='Session']:visible").click(timeout=10_000)
        page.keyboard.press("Escape")
        ask(page, "Which options does it take?", 2)
        browser.close()

        # the person comes back in a fresh browser and resumes the conversation from the list
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(STEP_MS)
        page.goto(served)
        # the Library's picker lists what was read after the server started (it was built with the page)
        pick(page, "Document", pdf.name)
        page.get_by_role("tab", name="Reader").click()
        pick(page, "Document", pdf.name)
        pick(page, "Session", "Session 1")
        page.get_by_role("button", name="Resume").click()
        expect(page.get_by_text("Resumed session 1 after 2 turn(s).")).to_be_visible()
        expect(page.get_by_text("Which options does it take?")).to_be_visible()
        ask(page, "Where are bugs reported?", 3)
        page.screenshot(path=shots / "3-reader-resumed.png", full_page=True)
        # branch after the first turn: the later turns leave the conversation, a new line starts there
        pick(page, "Turn to branch from", "1: ")
        page.get_by_role("button", name="Branch from this turn").click()
        branching = "Branching session 1 after turn 1: the next question starts a new line."
        expect(page.get_by_text(branching)).to_be_visible()
        expect(page.get_by_text("Which options does it take?")).to_have_count(0)
        ask(page, "What is ASN.1?", 4)
        pick(page, "Turn to branch from", "4 (after 1)")
        page.screenshot(path=shots / "4-reader-branched.png", full_page=True)
        page.get_by_role("tab", name="Settings").click()
        expect(page.get_by_text("Loaded model")).to_be_visible()
        page.screenshot(path=shots / "5-settings.png", full_page=True)
        browser.close()
    for name in ("1-library", "2-reader-ask", "3-reader-resumed", "4-reader-branched", "5-settings"):
        png = (shots / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000, name
