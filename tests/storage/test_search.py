"""Full-text search over chunk text: ranking, filters, phrases, locations, and hostile query text."""

from __future__ import annotations

import pytest
from storage_testkit import MODEL, new_document, state_bytes

from megalodoc.storage import ChunkText, Location, Store
from megalodoc.storage.fts_query import fts5_query, parse_terms, websearch_query

TEXTS = [
    "The tokenizer splits text into pieces before the model reads it.",
    "Gradient checkpointing trades compute for memory during training.",
    "A tokenizer, a tokenizer everywhere: tokenizers decide the vocabulary of the tokenizer.",
    "Chunk boundaries carry the recurrent state from one chunk to the next.",
]


def library(store: Store) -> tuple[int, int]:
    """Two documents: a book (pages) and a repository (files), with searchable chunk text."""
    book = new_document(store, name="book.pdf")
    chunks = [ChunkText(100 * i, 100 * (i + 1), text) for i, text in enumerate(TEXTS)]
    pages = [Location.page_range(100 * i, 100 * (i + 1), 10 + i) for i in range(4)]
    store.add_snapshot(book.id, 400, state_bytes(1), MODEL, 1, chunks=chunks, locations=pages)
    repo = new_document(store, name="repo", kind="repo")
    store.add_snapshot(
        repo.id,
        50,
        state_bytes(2),
        MODEL,
        1,
        chunks=[ChunkText(0, 50, "def tokenizer_factory(): return the tokenizer for the state")],
        locations=[Location.file_lines(0, 50, "src/tok.py", 40, 88)],
    )
    return book.id, repo.id


def test_bm25_ranks_denser_matches_first_and_hits_carry_locations(store: Store) -> None:
    book, repo = library(store)
    hits = store.search("tokenizer")
    assert [hit.start for hit in hits if hit.document_id == book][:2] == [200, 0]
    assert {hit.document_id for hit in hits} == {book, repo}
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    first = hits[0]
    assert first.where == "page 12"
    assert "**" in first.snippet
    repo_hit = next(hit for hit in hits if hit.document_id == repo)
    assert repo_hit.where == "src/tok.py:40-88"


def test_document_filter_limit_and_match_modes(store: Store) -> None:
    book, repo = library(store)
    assert {hit.document_id for hit in store.search("tokenizer", document_id=repo)} == {repo}
    assert len(store.search("tokenizer", limit=1)) == 1
    assert [hit.start for hit in store.search("gradient memory")] == [100]
    assert store.search("gradient tokenizer") == []
    assert {hit.start for hit in store.search("gradient tokenizer", document_id=book, match="any")} == {0, 100, 200}
    with pytest.raises(ValueError, match="match mode"):
        store.search("x", match="some")


def test_phrases_and_stemming(store: Store) -> None:
    book, _ = library(store)
    assert [hit.start for hit in store.search('"recurrent state"', document_id=book)] == [300]
    assert store.search('"state recurrent"', document_id=book) == []
    assert 200 in {hit.start for hit in store.search("tokenizers", document_id=book)}
    assert [hit.start for hit in store.search("checkpoint", document_id=book)] == [100]


HOSTILE = [
    '"',
    '"unclosed phrase',
    "AND OR NOT",
    "NEAR(tokenizer model, 3)",
    "text:tokenizer",
    "tok*",
    "^tokenizer",
    "-tokenizer +model",
    "tokenizer) OR (1=1",
    "'; DROP TABLE chunks; --",
    "\\",
    "\x00tokenizer",
    "émigré naïve 東京 🙂",
    "a" * 5000,
    "{}[]<>!@#$%&|~`",
    "",
    "   ",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_any_query_text_is_safe(store: Store, query: str) -> None:
    library(store)
    for match in ("all", "any"):
        hits = store.search(query, match=match)
        assert isinstance(hits, list)
    assert len(store.search("tokenizer")) == 3  # nothing was dropped or damaged


def test_special_characters_still_find_the_words_around_them(store: Store) -> None:
    library(store)
    assert [hit.start for hit in store.search("checkpointing*) (trades:")] == [100]


def test_query_parsing() -> None:
    assert parse_terms('Foo "bar  baz" foo NEAR(') == [("foo",), ("bar", "baz"), ("near",)]
    assert fts5_query([("foo",), ("bar", "baz")]) == '"foo" "bar baz"'
    assert fts5_query([("foo",), ("bar",)], "any") == '"foo" OR "bar"'
    assert websearch_query([("foo",), ("bar", "baz")], "any") == 'foo or "bar baz"'


def test_deleted_text_leaves_the_index(store: Store) -> None:
    book, repo = library(store)
    store.delete_document(book)
    assert {hit.document_id for hit in store.search("tokenizer")} == {repo}
    assert store.search("gradient") == []
    assert store.check_integrity() == []


def test_stopwords_are_dropped_unless_nothing_else_is_left() -> None:
    assert parse_terms("the tokenizer of the model") == [("tokenizer",), ("model",)]
    assert parse_terms('"the state"') == [("the", "state")]
    assert parse_terms("the of") == [("the",), ("of",)]


@pytest.fixture
def ubiquitous_corpus(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Store:  # noqa: ANN001
    """40 chunks that all say "reader"; a few also say "lantern", once, twice or three times."""
    from megalodoc.storage import open_store

    store = open_store(str(tmp_path / "u.db"))
    document = new_document(store)
    lanterns = {7: 1, 19: 3, 30: 2}
    chunks = [
        ChunkText(10 * i, 10 * (i + 1), "reader " * (1 + i % 3) + "lantern " * lanterns.get(i, 0) + f"w{i}")
        for i in range(40)
    ]
    store.add_chunks(document.id, chunks)
    yield store
    store.close()


def test_heavy_queries_keep_the_exact_bm25_order_of_everything_that_carries_weight(
    ubiquitous_corpus: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from megalodoc.storage import search_sqlite

    exact = {
        (query, match): [(hit.start, hit.score) for hit in ubiquitous_corpus.search(query, match=match, limit=5)]
        for query, match in [("reader lantern", "all"), ("reader lantern", "any"), ("reader", "all")]
    }
    monkeypatch.setattr(search_sqlite, "RANK_EXACTLY_UP_TO", 5)  # every query below now counts as heavy

    def starts(query: str, match: str) -> list[int]:
        return [hit.start for hit in ubiquitous_corpus.search(query, match=match, limit=5)]

    # "lantern" is selective (3 of 40 chunks): "all" ranks exactly as before.
    assert starts("reader lantern", "all") == [start for start, _ in exact[("reader lantern", "all")]]
    assert starts("reader lantern", "all")[0] == 190  # three lanterns
    # "any": the lantern chunks in BM25 order, then "reader"-only chunks (weight ~0) in document order.
    heavy_any = starts("reader lantern", "any")
    assert heavy_any[:3] == [start for start, _ in exact[("reader lantern", "any")]][:3] == [190, 300, 70]
    assert heavy_any[3:] == [0, 10]
    # Only a word in every chunk: BM25 cannot rank it (its weight is ~0), so document order, score 0.
    assert starts("reader", "all") == [0, 10, 20, 30, 40]
    assert all(score < 1e-3 for _, score in exact[("reader", "all")])
    assert all(hit.score == 0.0 for hit in ubiquitous_corpus.search("reader"))
