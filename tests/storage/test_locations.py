"""Locations: token position -> page / file:lines / characters for display, and back; stored text and ids."""

from __future__ import annotations

import pytest
from storage_testkit import MODEL, new_document, state_bytes

from megalodoc.storage import ChunkText, Location, StorageError, Store, describe_locations


def pdf_with_pages(store: Store) -> int:
    """A document of 4 pages, 100 tokens each, written as two snapshots."""
    document = new_document(store)
    pages = [Location.page_range(100 * i, 100 * (i + 1), i + 131) for i in range(4)]
    store.add_snapshot(document.id, 200, state_bytes(1), MODEL, 1, locations=pages[:2])
    store.add_snapshot(document.id, 400, state_bytes(2), MODEL, 1, locations=pages[2:])
    return document.id


def test_page_locations_both_ways(store: Store) -> None:
    document_id = pdf_with_pages(store)
    assert store.locate(document_id, 0).display == "page 131"
    assert store.locate(document_id, 199).display == "page 132"
    assert store.locate(document_id, 200).display == "page 133"
    assert store.locate(document_id, 400) is None
    assert store.describe_range(document_id, 150, 250) == "pages 132-133"
    assert store.describe_range(document_id, 210, 220) == "page 133"
    assert store.position_of_page(document_id, 133) == 200
    assert store.position_of_page(document_id, 999) is None
    assert [loc.page for loc in store.locations_between(document_id, 99, 301)] == [131, 132, 133, 134]


def test_file_line_locations_both_ways(store: Store) -> None:
    document = new_document(store, name="repo", kind="repo")
    store.add_locations(
        document.id,
        [
            Location.file_lines(0, 120, "src/app.py", 1, 39),
            Location.file_lines(120, 300, "src/app.py", 40, 88),
            Location.file_lines(300, 310, "README.md", 3, 3),
        ],
    )
    found = store.locate(document.id, 150)
    assert (found.display, found.kind, found.path) == ("src/app.py:40-88", "file", "src/app.py")
    assert store.locate(document.id, 305).display == "README.md:3"
    assert store.position_of_line(document.id, "src/app.py", 60) == 120
    assert store.position_of_line(document.id, "src/app.py", 1) == 0
    assert store.position_of_line(document.id, "src/app.py", 89) is None
    assert store.position_of_line(document.id, "src/other.py", 1) is None
    assert store.describe_range(document.id, 100, 305) == "src/app.py:1-39, src/app.py:40-88, README.md:3"


def test_text_offset_locations_both_ways(store: Store) -> None:
    document = new_document(store, name="notes.txt", kind="text")
    store.add_locations(document.id, [Location.text_span(0, 50, 0, 210), Location.text_span(50, 90, 210, 400)])
    assert store.locate(document.id, 60).display == "chars 210-400"
    assert store.position_of_char(document.id, 209) == 0
    assert store.position_of_char(document.id, 210) == 50
    assert store.position_of_char(document.id, 400) is None


def test_describe_locations_of_nothing_is_empty() -> None:
    assert describe_locations([]) == ""


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Location(5, 5, page=1), "start < end"),
        (lambda: Location(-1, 5, page=1), "start < end"),
        (lambda: Location.page_range(0, 5, 0), "pages count from 1"),
        (lambda: Location(0, 5, path="a.py", line_start=3), "both line_start and line_end"),
        (lambda: Location.file_lines(0, 5, "a.py", 9, 3), "line_start <= line_end"),
        (lambda: Location(0, 5, line_start=1, line_end=2), "needs a file path"),
        (lambda: Location(0, 5), "a page, a path or character offsets"),
        (lambda: Location.text_span(0, 5, 10, 3), "char_start <= char_end"),
        (lambda: ChunkText(0, 3, "abc", token_ids=(1, 2)), "2 token ids for 3 tokens"),
        (lambda: ChunkText(0, 1, "a", token_ids=(-5,)), r"\[0, 2\*\*31\)"),
    ],
)
def test_bad_locations_and_chunks_are_refused_before_storing(build, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        build()


def test_chunk_text_and_token_ids_for_re_reading(store: Store) -> None:
    document = new_document(store)
    ids = list(range(1000, 1200))
    store.add_snapshot(
        document.id,
        100,
        state_bytes(1),
        MODEL,
        1,
        chunks=[ChunkText(0, 100, "first hundred", tuple(ids[:100]))],
    )
    store.add_snapshot(
        document.id,
        200,
        state_bytes(2),
        MODEL,
        1,
        chunks=[ChunkText(100, 200, "second hundred", tuple(ids[100:]))],
    )
    assert store.token_ids(document.id, 90, 130) == ids[90:130]
    assert store.token_ids(document.id, 0, 200) == ids
    assert [c.text for c in store.get_chunks(document.id, 99, 101)] == ["first hundred", "second hundred"]
    with pytest.raises(StorageError, match=r"tokens \[200, 210\)"):
        store.token_ids(document.id, 150, 210)
    store.add_chunks(document.id, [ChunkText(300, 310, "no ids kept")])
    assert not store.get_chunks(document.id, 300, 301)[0].has_token_ids
    with pytest.raises(StorageError, match="not stored"):
        store.token_ids(document.id, 300, 305)
