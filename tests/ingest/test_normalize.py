"""PDF text cleaning rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from megalodoc.ingest.normalize import LIGATURES, clean_pdf_text, clean_prose, dehyphenate


def test_ligatures_are_spelled_out():
    for ligature, spelling in LIGATURES.items():
        assert clean_pdf_text(f"a{ligature}b") == f"a{spelling}b"


def test_dehyphenation_joins_only_lowercase_continuations():
    assert dehyphenate("an exam-\nple") == "an example"
    assert dehyphenate("an exam- \n  ple") == "an example"
    assert dehyphenate("Jean-\nPaul") == "Jean-\nPaul"
    assert dehyphenate("1990-\n2000") == "1990-\n2000"
    assert dehyphenate("élé-\ngant") == "élégant"
    assert dehyphenate("a list:\n- item") == "a list:\n- item"


def test_whitespace_controls_and_soft_hyphens():
    raw = "  Title\u00a0with\u2009odd  spaces \t\r\nsoft\u00adhyphen zero\u200bwidth\x00\x07\n\n\n\n\nend  "
    assert clean_pdf_text(raw) == "Title with odd spaces\nsofthyphen zerowidth\n\nend"


def test_nfc():
    assert clean_pdf_text("Cafe\u0301") == "Caf\u00e9"
    assert clean_prose("Cafe\u0301\n") == "Caf\u00e9\n"


@given(st.text())
def test_cleaning_is_idempotent(text: str):
    once = clean_pdf_text(text)
    assert clean_pdf_text(once) == once
