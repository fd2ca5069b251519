"""Sources to token ids with locations, with a real sentencepiece model."""

from __future__ import annotations

from pathlib import Path

from megalodoc.ingest.sources import Locator, SourceOptions, open_source
from megalodoc.ingest.token_stream import tokenize_source


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
    pieces = list(tokenize_source(source, tokenizer))
    stream = [token for piece in pieces for token in piece.ids]
    by_locator = {piece.locator: piece.text for piece in source.pieces()}
    for piece in pieces:
        assert tokenizer.decode(stream[piece.token_start:piece.token_end]) == by_locator[piece.locator]
    assert pieces[0].locator == Locator.for_lines("json/__init__.py", 1, 30)
    assert pieces[-1].locator.path == "json/tool.py" and pieces[-1].token_end == len(stream)


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
