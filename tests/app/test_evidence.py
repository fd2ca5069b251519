"""Evidence ranking on a real SQLite store: a real PDF and a real repository read by a tiny model, and a
small text read by the shipped model."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch
from app_support import write_pdf
from pipeline_support import TINY_CHUNK, stdlib_model_folder

from megalodoc.app.reader.evidence import METHODS, rank_evidence, search_query
from megalodoc.app.reader.evidence_model import question_ids, question_log_likelihood, restore_state
from megalodoc.app.reader.query_expansion import feedback_terms
from megalodoc.ingest.library import Library

STDLIB = Path(sysconfig.get_paths()["stdlib"])

# One topic per page, each named by words found nowhere else in the book.
PAGES = {
    1: [
        "The orchard keeps apples in a cold cellar after the harvest.",
        "Pickers climb ladders and fill baskets with ripe apples every autumn.",
    ],
    2: [
        "A volcano erupts when magma rises through the crust.",
        "Lava flows downhill and cools into black basalt rock.",
    ],
    3: [
        "The submarine measures depth with sonar pings.",
        "Its periscope rises above the waves when the crew surfaces.",
    ],
    4: ["Bakers knead dough and let the bread rise overnight.", "A hot oven gives the loaf its brown crust."],
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    """A SQLite library read by a tiny model: a 4-page PDF and the stdlib json package."""
    folder = tmp_path_factory.mktemp("evidence")
    model_dir = stdlib_model_folder(folder)
    write_pdf(folder / "book.pdf", [PAGES[number] for number in sorted(PAGES)])
    lib = Library(f"sqlite:///{folder / 'store.db'}", model=model_dir)
    book = lib.ingest(folder / "book.pdf")
    json_doc = lib.ingest(STDLIB / "json")
    yield lib, book, json_doc
    lib.close()


def page_of_word(word: str) -> int:
    return next(n for n, lines in PAGES.items() if any(word in line for line in lines))


@pytest.mark.parametrize("method", METHODS)
def test_hits_come_from_the_page_that_holds_the_words(library, method):
    lib, book, _ = library
    hits = rank_evidence(
        lib.store, lib.bundle, book.id, "Where does sonar measure depth?", before=None, k=3, method=method
    )
    assert hits, "the words are in the book; some passage must be found"
    assert all(hit.method == method for hit in hits)
    for hit in hits:
        pages = {loc.page for loc in hit.locations}
        assert pages, f"hit {hit.chunk_id} has no location"
        assert hit.where.startswith("page")
        for word in ("sonar", "depth", "submarine", "lava", "apples", "bread"):
            if word in hit.text:
                assert page_of_word(word) in pages, (word, hit.where, hit.text)
    if method == "fts":
        assert hits[0].where == f"page {page_of_word('sonar')}"
        assert any(word in hits[0].text for word in ("sonar", "depth")), hits[0].text


@pytest.mark.parametrize("method", METHODS)
def test_nothing_past_the_reading_point(library, method):
    lib, book, _ = library
    late = lib.store.position_of_page(book.id, page_of_word("bread"))
    everything = rank_evidence(lib.store, lib.bundle, book.id, "bread dough oven", before=None, k=5, method=method)
    assert any("bread" in hit.text or "oven" in hit.text for hit in everything)
    for before in (0, TINY_CHUNK, late, late + TINY_CHUNK):
        hits = rank_evidence(
            lib.store, lib.bundle, book.id, "bread dough oven crust apples", before=before, k=5, method=method
        )
        assert all(hit.end <= before for hit in hits), (before, [(h.start, h.end) for h in hits])
    assert rank_evidence(lib.store, lib.bundle, book.id, "bread dough oven", before=late, k=5, method=method) == []


def test_repository_hits_cite_the_lines_that_hold_the_passage(library):
    lib, _, json_doc = library
    hits = rank_evidence(
        lib.store, lib.bundle, json_doc.id, "How are Infinity and NaN floats encoded?", before=None, k=5, method="fts"
    )
    assert hits
    for hit in hits:
        files = {loc.path for loc in hit.locations}
        assert files and all(path.startswith("json/") for path in files)
        # the quoted passage is the text of the cited lines
        for loc in hit.locations:
            lines = (STDLIB / loc.path).read_text().splitlines(keepends=True)[loc.line_start - 1 : loc.line_end]
            cited = "".join(lines)
            assert any(part.strip() and part in cited for part in hit.text.splitlines()), (hit.where, hit.text[:80])


def test_methods_rank_the_same_candidates(library):
    lib, _, json_doc = library
    question = "what does the scanner do with a string that starts with a quote?"
    pool = rank_evidence(lib.store, lib.bundle, json_doc.id, question, before=None, k=12, pool=12, method="fts")
    assert len(pool) == 12
    rerankers = ("fts", "model", "combined")  # orders of one candidate pool
    ids = {
        method: [
            h.chunk_id
            for h in rank_evidence(
                lib.store, lib.bundle, json_doc.id, question, before=None, k=12, pool=12, method=method
            )
        ]
        for method in rerankers
    }
    assert {m: sorted(v) for m, v in ids.items()} == {m: sorted(h.chunk_id for h in pool) for m in rerankers}
    assert ids["fts"] == [h.chunk_id for h in pool]
    top = rank_evidence(lib.store, lib.bundle, json_doc.id, question, before=None, k=3, pool=12, method="model")
    assert [h.chunk_id for h in top] == ids["model"][:3]
    scores = [
        h.score
        for h in rank_evidence(lib.store, lib.bundle, json_doc.id, question, before=None, k=12, pool=12, method="model")
    ]
    assert scores == sorted(scores, reverse=True)


def test_expansion_adds_the_words_of_the_best_passages():
    passages = ["the orchard cellar keeps apples cold", "cellar doors and cellar stairs", "apples and pears"]
    pool = [*passages, "a lava flow", "the sonar depth", "bread in the oven", "the crew surfaces"]
    terms = feedback_terms("where are apples kept?", passages, [9.0, 5.0, 1.0], pool, feedback=2, terms=3)
    assert terms[0] == "cellar"  # in both feedback passages, twice in the second
    assert "apples" not in terms and "the" not in terms  # the question's own words and stopwords stay out
    assert set(terms) <= {"orchard", "cellar", "keeps", "cold", "doors", "stairs"}  # only the best two passages
    common = feedback_terms("where?", ["x cellar"] * 3, [3.0, 2.0, 1.0], ["x cellar"] * 10, feedback=3, terms=3)
    assert common == []  # a word in every candidate passage names no topic


def test_expanded_hits_come_from_both_searches(library):
    lib, _, json_doc = library
    question = "How can I save my own class that the library does not know how to write out?"
    hits = rank_evidence(lib.store, lib.bundle, json_doc.id, question, before=None, k=8, method="expanded")
    first = rank_evidence(lib.store, lib.bundle, json_doc.id, question, before=None, k=8, method="fts")
    assert hits and len({h.chunk_id for h in hits}) == len(hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # reciprocal-rank fusion of two searches: a passage first in both scores 2 / 61, and every score is
    # at least one search's share (a pool of 30)
    assert scores[0] <= 2 / 61 + 1e-12 and all(score >= 1 / (60 + 30) for score in scores)
    assert hits[0].chunk_id == first[0].chunk_id  # the first search's best passage stays first


def test_model_score_equals_reading_the_document_from_the_start(library):
    """The fast path (stored snapshot + tail re-read, then the question) against the obvious twin:
    the whole document up to the passage's end read in one pass, then the question."""
    lib, book, _ = library
    model = lib.bundle.model
    ids, scored_from = question_ids(lib.bundle, "Why does lava cool into basalt?")
    everything = lib.store.token_ids(book.id, 0, book.token_count)
    for end in (TINY_CHUNK, 3 * TINY_CHUNK, 3 * TINY_CHUNK + 5, book.token_count):
        restored = restore_state(lib.store, lib.bundle, book.id, end)
        with torch.no_grad():
            _, uninterrupted = model(torch.tensor([everything[:end]]), None, compute_logits=False)
        fast = question_log_likelihood(model, restored, ids, scored_from)
        twin = question_log_likelihood(model, uninterrupted, ids, scored_from)
        assert fast == pytest.approx(twin, rel=1e-5, abs=1e-4), end


def test_bad_arguments_are_refused(library):
    lib, book, _ = library
    with pytest.raises(ValueError, match="unknown evidence method"):
        rank_evidence(lib.store, lib.bundle, book.id, "lava", before=None, method="psychic")
    with pytest.raises(ValueError, match="empty"):
        rank_evidence(lib.store, lib.bundle, book.id, "   ", before=None)
    with pytest.raises(ValueError, match="before"):
        rank_evidence(lib.store, lib.bundle, book.id, "lava", before=-1)


def test_question_words_leave_the_search_query():
    assert search_query("How does the scanner handle NaN?") == "the scanner handle NaN?"
    assert search_query("How do I?") == "How do I?"


def test_shipped_model_ranks_the_literal_passage_first(tmp_path):
    """The shipped model on a small real text: a question in the text's own words finds its chunk first."""
    text = (STDLIB / "this.py").read_text() + "\n" + (STDLIB / "textwrap.py").read_text()[:6000]
    path = tmp_path / "notes.txt"
    path.write_text(text)
    with Library(f"sqlite:///{tmp_path / 'shipped.db'}") as lib:
        doc = lib.ingest(path)
        question = "How does wordsep_re handle an em-dash between words?"
        hits = rank_evidence(lib.store, lib.bundle, doc.id, question, before=None, k=5)
        assert hits and "em-dash between words" in hits[0].text, [(h.where, h.text[:60]) for h in hits]
