"""Sources to token ids with locations, with a real sentencepiece model."""

from __future__ import annotations

from pathlib import Path

import pytest

from megalodoc.ingest.sources import Locator, SourceOptions, open_source
from megalodoc.ingest.token_stream import LocationMap, TokenSpan, tokenize_source


def test_repository_tokens_decode_to_the_text_stream_headers_included(json_repo: Path, tokenizer):
    source = open_source(json_repo)
    pieces = list(tokenize_source(source, tokenizer))
    ids = [token for piece in pieces for token in piece.ids]
    assert tokenizer.decode(ids) == source.text()
    header = tokenizer.encode("# file: json/__init__.py\n")
    assert ids[: len(header)] == header
    assert pieces[0].token_start == 0
    for before, after in zip(pieces, pieces[1:], strict=False):
        assert after.token_start == before.token_end


def test_every_token_maps_back_to_its_piece(json_repo: Path, tokenizer):
    source = open_source(json_repo, SourceOptions(repo_piece_lines=30))
    locations = LocationMap()
    stream = []
    for piece in tokenize_source(source, tokenizer):
        locations.add_piece(piece)
        stream.extend(piece.ids)
    by_locator = {piece.locator: piece.text for piece in source.pieces()}
    for span in locations.spans():
        assert tokenizer.decode(stream[span.token_start:span.token_end]) == by_locator[span.locator]
    assert locations.locate(0) == Locator.for_lines("json/__init__.py", 1, 30)
    assert locations.locate(len(stream) - 1).path == "json/tool.py"
    assert locations.locate(len(stream)) is None


def test_resume_gives_the_same_ids(json_repo: Path, tokenizer):
    source = open_source(json_repo, SourceOptions(repo_piece_lines=25))
    whole = list(tokenize_source(source, tokenizer))
    middle = whole[len(whole) // 2]
    resumed = list(tokenize_source(source, tokenizer, start_piece=middle.piece_index,
                                   token_start=middle.token_start))
    assert resumed == whole[len(whole) // 2:]


def test_pdf_tokens_skip_blank_pages_and_keep_page_locators(pdfkit, tokenizer):
    pages = pdfkit.book_pages(4)
    pages[2] = []
    source = open_source(pdfkit.draw("book.pdf", pages), SourceOptions(pdf_workers=0))
    pieces = list(tokenize_source(source, tokenizer))
    assert [piece.locator.page for piece in pieces] == [1, 2, 4]
    assert [piece.piece_index for piece in pieces] == [0, 1, 3]
    assert tokenizer.decode([t for piece in pieces for t in piece.ids]) == source.text()


def test_closing_the_token_stream_stops_pdf_workers(pdfkit, tokenizer, child_pids):
    source = open_source(pdfkit.draw("long.pdf", pdfkit.book_pages(16)),
                         SourceOptions(pdf_workers=2, pdf_pages_per_task=2, pdf_in_process_below=1))
    before = child_pids()
    stream = tokenize_source(source, tokenizer)
    next(stream)
    assert child_pids() - before
    stream.close()
    assert child_pids() - before == set()


def test_location_map_merges_equal_neighbours_and_finds_overlaps():
    page1, page2 = Locator.for_page(1), Locator.for_page(2)
    locations = LocationMap([TokenSpan(0, 10, page1), TokenSpan(10, 15, page1), TokenSpan(15, 40, page2)])
    assert len(locations) == 2
    assert locations.spans() == [TokenSpan(0, 15, page1), TokenSpan(15, 40, page2)]
    assert locations.locate(14) == page1 and locations.locate(15) == page2
    assert locations.overlapping(12, 16) == locations.spans()
    assert locations.overlapping(15, 20) == [TokenSpan(15, 40, page2)]
    with pytest.raises(ValueError, match="overlaps"):
        locations.add(39, 45, page2)
    with pytest.raises(ValueError, match="empty"):
        locations.add(50, 50, page2)
