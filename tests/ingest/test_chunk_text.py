"""Stored chunk text is exactly the chunk's share of the document, also where a character's byte-fallback
tokens straddle a chunk boundary, across snapshots and across a resumed ingest; with the shipped
tokenizer (model/default), a real (tiny) model and a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_support import TINY_CHUNK, make_model_folder

from megalodoc.ingest.chunk_text import chunk_texts
from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import CancelToken
from megalodoc.model.boundary import CALL_CHUNKS
from megalodoc.model.tokenizer import Tokenizer

SHIPPED_TOKENIZER = Path(__file__).resolve().parents[2] / "model" / "default" / "tokenizer.model"
# Characters the shipped model spells as 2, 3 and 4 byte tokens (byte fallback); a real U+FFFD too.
SPAN = CALL_CHUNKS * TINY_CHUNK  # tokens per model call: snapshots fall at multiples of it
WIDE = ["ǅ", "龘", "ꙮ", "𝔸", "⿕"]


@pytest.fixture(scope="module")
def shipped() -> Tokenizer:
    return Tokenizer.from_file(SHIPPED_TOKENIZER)


@pytest.fixture(scope="module")
def model_dir(shipped: Tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shipped-tokenizer-model")
    return make_model_folder(folder / "model", SHIPPED_TOKENIZER, shipped.vocab_size)


def wide_text() -> str:
    """Words with byte-fallback characters at every offset mod the chunk size, so many straddle a cut."""
    parts = []
    for i in range(60):
        parts.append("ab" * (i % 5) + WIDE[i % len(WIDE)] * (1 + i % 3) + (" \ufffd" if i % 17 == 0 else "") + "\n")
    return "".join(parts)


def test_incomplete_tail_matches_the_decoded_prefix(shipped: Tokenizer) -> None:
    text = wide_text().replace("\ufffd", "?")
    ids = shipped.encode(text)
    assert sum(shipped.id_to_piece(i).startswith("<0x") for i in ids) > 100
    for k in range(len(ids) + 1):
        # the twin: back off until the decoded prefix is a prefix of the text (no U+FFFD in it)
        whole = k
        while not text.startswith(shipped.decode(ids[:whole])):
            whole -= 1
        assert shipped.incomplete_tail(ids[:k]) == k - whole
    assert shipped.incomplete_tail(shipped.encode("x\ufffd")) == 0  # a real U+FFFD is a whole character


def test_chunk_texts_join_to_the_document(shipped: Tokenizer) -> None:
    text = wide_text()
    ids = shipped.encode(text)
    for size in (1, 2, 3, 5, 16):
        cut = [ids[i : i + size] for i in range(0, len(ids), size)]
        texts, carry = chunk_texts(shipped, [], cut)
        assert "".join(texts) == text and carry == []
        assert sum(t.count("\ufffd") for t in texts) == text.count("\ufffd")


def stored_chunks(lib: Library, doc) -> list[tuple[int, int, str, list[int]]]:
    """(start, end, stored text, stored ids) of each chunk of `doc`, which cover it in C-token steps."""
    chunks = lib.store.get_chunks(doc.id, 0, doc.token_count)
    assert [c.start for c in chunks] == list(range(0, doc.token_count, TINY_CHUNK))
    return [(c.start, c.end, c.text, lib.store.token_ids(doc.id, c.start, c.end)) for c in chunks]


def test_ingest_stores_exact_chunk_text_where_characters_straddle_cuts(tmp_path, model_dir, shipped) -> None:
    text = wide_text()
    book = tmp_path / "wide.txt"
    book.write_text(text, encoding="utf-8")
    with Library(tmp_path / "lib.db", model_dir, snapshot_every=2) as lib:
        doc = lib.ingest(book)
        chunks = stored_chunks(lib, doc)
        ids = lib.store.token_ids(doc.id, 0, doc.token_count)
    assert shipped.decode(ids) == text
    # the case under test happens: some chunks' ids decoded on their own break a character
    assert sum("\ufffd" in shipped.decode(chunk_ids).replace(" \ufffd", "") for *_, chunk_ids in chunks) > 5
    assert "".join(chunk_text for _, _, chunk_text, _ in chunks) == text
    assert sum(chunk_text.count("\ufffd") for _, _, chunk_text, _ in chunks) == text.count("\ufffd")  # real ones
    assert [chunk_ids for *_, chunk_ids in chunks] == [ids[i : i + TINY_CHUNK] for i in range(0, len(ids), TINY_CHUNK)]


def test_resumed_ingest_stores_the_same_chunk_text(tmp_path, model_dir) -> None:
    text = wide_text()
    book = tmp_path / "wide.txt"
    book.write_text(text, encoding="utf-8")
    with Library(tmp_path / "clean.db", model_dir, snapshot_every=1) as clean:
        reference = stored_chunks(clean, clean.ingest(book))
    for stop_after in range(1, 8):  # cut at several boundaries, some inside a character
        with Library(tmp_path / f"lib{stop_after}.db", model_dir, snapshot_every=1) as lib:
            cancel = CancelToken()

            def stop(progress, stop_after=stop_after, cancel=cancel):
                if progress.snapshots_written >= stop_after:
                    cancel.cancel()

            doc = lib.ingest(book, on_progress=stop, cancel=cancel)
            assert doc.status == "cancelled" and doc.committed_position == stop_after * SPAN
            resumed = lib.ingest_many([book])[0]
            assert resumed.status == "complete" and resumed.resumed_from == stop_after * SPAN
            assert stored_chunks(lib, resumed.document) == reference
