"""Every state an ingest stores is a call-boundary state (a multiple of CALL_CHUNKS chunks); the end of a
document is the last call-boundary state plus the ids after it, and restoring it equals an uninterrupted
reading on the call grid bit for bit."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from pipeline_support import TINY_CHUNK
from state_helpers import assert_same_state, run_chunked

from megalodoc.ingest.library import Library
from megalodoc.model import state_from_bytes, state_to_bytes
from megalodoc.model.boundary import CALL_CHUNKS, boundary_state_nbytes, run_aligned

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def stored_states(lib: Library, doc):
    """(snapshot info, decoded state) for every snapshot of the document."""
    for info in lib.snapshots(doc):
        data = lib.store.load_snapshot_bytes(info.id)
        yield info, state_from_bytes(data, lib.bundle, f"snapshot {info.id}")


def mid_chunk_cut(text: str, tokenizer, C: int, start: int, at_least: int = 0) -> str:
    """A prefix of `text` (at least `start` characters) whose token count ends well inside a chunk."""
    for n in range(start, len(text), 7):
        count = len(tokenizer.encode(text[:n]))
        if count >= at_least and 3 <= count % C <= C - 3:
            return text[:n]
    raise AssertionError("no prefix ends mid-chunk")


def check_boundary_snapshots(lib: Library, doc) -> None:
    span = CALL_CHUNKS * lib.bundle.chunk_size
    boundary = boundary_state_nbytes(lib.bundle.model.config)
    infos = []
    for info, state in stored_states(lib, doc):
        assert state.at_chunk_boundary and state.position % span == 0, info
        assert state.position == info.state_position
        assert state.nbytes() == boundary, (info.position, state.nbytes(), boundary)
        infos.append(info)
    assert all(not info.tail_ids for info in infos[:-1])
    last = infos[-1]
    assert last.position == doc.token_count and len(last.tail_ids) == doc.token_count % span
    assert list(last.tail_ids) == lib.store.token_ids(doc.id, last.state_position, doc.token_count)


@pytest.mark.parametrize("every", [1, 3])
def test_tiny_model_stores_only_boundary_states(tmp_path, model_dir, every):
    text = (STDLIB / "this.py").read_text() + (STDLIB / "textwrap.py").read_text()[:3000]
    path = tmp_path / "book.txt"
    with Library(tmp_path / "lib.db", model_dir, snapshot_every=every) as lib:
        path.write_text(mid_chunk_cut(text, lib.bundle.tokenizer, TINY_CHUNK, 1500))
        doc = lib.ingest(path)
        assert doc.token_count % TINY_CHUNK != 0, "the test needs a document ending mid-chunk"
        check_boundary_snapshots(lib, doc)
        ids = lib.store.token_ids(doc.id, 0, doc.token_count)
        model = lib.bundle.model
        span = CALL_CHUNKS * TINY_CHUNK
        assert_same_state(lib.state_at(doc, doc.token_count), run_chunked(model, ids, span))
        for p in (TINY_CHUNK * 4 + 3, TINY_CHUNK * 5, TINY_CHUNK * 7 + 1, doc.token_count - 1):  # tails of chunks
            assert_same_state(lib.state_at(doc, p), run_chunked(model, ids[:p], span))
        # a document that stopped after its final snapshot (before its status was written) completes
        # from that snapshot without reading anything again
        count = len(lib.snapshots(doc))
        lib.store.set_status(doc.id, "ingesting")
        outcome = lib.ingest_many([path])[0]
        assert outcome.status == "complete" and outcome.tokens_read == 0
        assert len(lib.snapshots(doc)) == count and lib.documents()[0].token_count == doc.token_count


def test_shipped_model_stores_boundary_states_only(tmp_path):
    with Library(tmp_path / "lib.db") as lib:  # the default model
        C = lib.bundle.chunk_size
        span = CALL_CHUNKS * C
        tokenizer = lib.bundle.tokenizer
        text = mid_chunk_cut((STDLIB / "textwrap.py").read_text(), tokenizer, C, 2000, at_least=span + C + C // 2)
        path = tmp_path / "textwrap.txt"
        path.write_text(text)
        doc = lib.ingest(path)
        assert doc.token_count % C != 0 and doc.token_count % span > C  # a tail longer than a chunk
        check_boundary_snapshots(lib, doc)
        end = lib.snapshots(doc)[-1]
        restored = lib.state_at(doc, doc.token_count)
        ids = lib.store.token_ids(doc.id, 0, doc.token_count)
        assert_same_state(restored, run_chunked(lib.bundle.model, ids, span))
        # what the end used to cost: the mid-chunk state with the unfinished chunk's keys and values
        mid_chunk = state_to_bytes(restored, lib.bundle)
        assert end.size_bytes < len(mid_chunk)
        assert not restored.at_chunk_boundary
        assert restored.nbytes() > boundary_state_nbytes(lib.bundle.model.config)
        assert_same_state(run_aligned(lib.bundle.model, None, ids), restored)
