"""The ingest pipeline end to end on real files, a real SQLite store and a real (tiny) model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import torch
from pipeline_support import TINY_CHUNK
from state_helpers import assert_same_state, run_chunked

from megalodoc.app.cli import main as cli_main
from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import CancelToken, IngestError
from megalodoc.model import load_bundle
from megalodoc.model.boundary import CALL_CHUNKS
from megalodoc.storage import open_store

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SPAN = CALL_CHUNKS * TINY_CHUNK  # tokens per model call: states are stored at multiples of it


@pytest.fixture
def book(tmp_path) -> Path:
    text = (STDLIB / "this.py").read_text() + "\n" + (STDLIB / "textwrap.py").read_text()[:2000]
    path = tmp_path / "book.txt"
    path.write_text(text)
    return path


def final_snapshot(lib: Library, doc):
    return lib.snapshots(doc)[-1]


def test_ingest_text_snapshots_every_call_and_restores_exact_state(tmp_path, model_dir, book):
    with Library(tmp_path / "lib.db", model_dir, snapshot_every=1) as lib:
        events = []
        doc = lib.ingest(book, on_progress=events.append)
        assert doc.status == "complete" and doc.committed_position == doc.token_count > 3 * SPAN
        snaps = lib.snapshots(doc)
        positions = [s.position for s in snaps]
        tail = doc.token_count % SPAN  # the end of a book after its last call boundary is stored as tail ids
        assert tail > TINY_CHUNK, "the test needs a tail of more than a chunk"
        assert positions == [*range(SPAN, doc.token_count, SPAN), doc.token_count]
        assert [len(s.tail_ids) for s in snaps] == [0] * (len(snaps) - 1) + [tail]
        # progress: increasing tokens, finished at the end
        assert events[-1].finished and events[-1].tokens_done == doc.token_count
        assert [e.tokens_done for e in events] == sorted(e.tokens_done for e in events)
        # the stored tokens re-run through the model give the final state bit for bit
        ids = lib.store.token_ids(doc.id, 0, doc.token_count)
        assert lib.bundle.tokenizer.decode(ids) == book.read_text()
        restored = lib.state_at(doc, doc.token_count)
        assert_same_state(restored, run_chunked(lib.bundle.model, ids, SPAN))
        with torch.no_grad():  # one call over everything: equal up to rounding (different block sizes)
            _, one_shot = lib.bundle.model(torch.tensor([ids]), compute_logits=False)
        assert torch.allclose(torch.view_as_real(one_shot.layers[1].ema), torch.view_as_real(restored.layers[1].ema),
                              atol=1e-5)
        # mid-document positions: snapshot + re-read tail equals the same reading on the call grid, bit for bit
        for p in (2 * TINY_CHUNK + 5, SPAN + 3 * TINY_CHUNK, 2 * SPAN):
            assert_same_state(lib.state_at(doc, p), run_chunked(lib.bundle.model, ids[:p], SPAN))
        # citations: text offsets map back
        loc = lib.store.locate(doc.id, p)
        assert loc is not None and loc.char_start is not None


def test_complete_document_is_not_read_again_and_changed_file_is_new(tmp_path, model_dir, book):
    with Library(tmp_path / "lib.db", model_dir) as lib:
        first = lib.ingest(book)
        count = len(lib.snapshots(first))
        outcome = lib.ingest_many([book])[0]
        assert outcome.status == "already-complete" and len(lib.snapshots(first)) == count
        book.write_text(book.read_text() + "\nA new closing line.\n")
        second = lib.ingest(book)
        assert second.id != first.id and len(lib.documents()) == 2


@pytest.mark.parametrize("every,calls", [(3, 1), (CALL_CHUNKS, 1), (CALL_CHUNKS + 1, 2), (2 * CALL_CHUNKS, 2)])
def test_snapshot_every_k_rounds_up_to_whole_calls(tmp_path, model_dir, book, every, calls):
    with Library(tmp_path / "lib.db", model_dir, snapshot_every=every) as lib:
        doc = lib.ingest(book)
        positions = [s.position for s in lib.snapshots(doc)]
        assert positions[:-1] == list(range(calls * SPAN, positions[-1], calls * SPAN))
        assert positions[-1] == doc.token_count


@pytest.mark.parametrize("dtype,threads", [(torch.float32, None), (torch.float64, None), (torch.float32, 4)])
def test_cancel_then_resume_is_bit_identical(tmp_path, model_dir, book, dtype, threads):
    """Calls are cut on the same absolute grid with or without the stop, so the bits agree in any dtype and
    at any thread count (a thread count changes the bits of a product of a given shape, not which shapes)."""
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        check_cancel_then_resume(tmp_path, load_bundle(model_dir, dtype=dtype), book)
    finally:
        torch.set_num_threads(saved_threads)


def check_cancel_then_resume(tmp_path, bundle, book):
    with Library(tmp_path / "clean.db", bundle, snapshot_every=1) as clean:
        reference = final_snapshot(clean, clean.ingest(book))
    with Library(tmp_path / "lib.db", bundle, snapshot_every=1) as lib:
        cancel = CancelToken()

        def stop_after_three(progress):
            if progress.snapshots_written >= 3:
                cancel.cancel()

        doc = lib.ingest(book, on_progress=stop_after_three, cancel=cancel)
        assert doc.status == "cancelled" and doc.committed_position == 3 * SPAN
        assert len(lib.snapshots(doc)) == 3
        resumed = lib.ingest_many([book])[0]
        assert resumed.status == "complete" and resumed.resumed_from == 3 * SPAN
        assert final_snapshot(lib, resumed.document).blob_sha256 == reference.blob_sha256
        assert final_snapshot(lib, resumed.document).position == reference.position


def test_resume_from_a_chunk_boundary_that_is_not_a_call_boundary(tmp_path, model_dir, book, monkeypatch):
    """A document cancelled by a release that read one chunk per call has its last snapshot at any chunk
    boundary: reading resumes there, its first call runs to the next call boundary, and the result is the
    stored state read on from there (within rounding of an uninterrupted reading)."""
    import megalodoc.ingest.pipeline as pipeline

    with Library(tmp_path / "clean.db", model_dir, snapshot_every=1) as clean:
        clean_doc = clean.ingest(book)
        reference = clean.state_at(clean_doc, clean_doc.token_count)
    with Library(tmp_path / "lib.db", model_dir, snapshot_every=1) as lib:
        cancel = CancelToken()
        monkeypatch.setattr(pipeline, "call_span", lambda config: config.chunk_size)  # one chunk per call
        doc = lib.ingest(book, on_progress=lambda p: p.snapshots_written >= 3 and cancel.cancel(), cancel=cancel)
        monkeypatch.undo()
        assert doc.status == "cancelled" and doc.committed_position == 3 * TINY_CHUNK
        legacy = lib.state_at(doc, 3 * TINY_CHUNK)
        resumed = lib.ingest_many([book])[0]
        assert resumed.status == "complete" and resumed.resumed_from == 3 * TINY_CHUNK
        doc = resumed.document
        positions = [s.position for s in lib.snapshots(doc)]
        assert positions == [TINY_CHUNK, 2 * TINY_CHUNK, 3 * TINY_CHUNK,
                             *range(SPAN, doc.token_count, SPAN), doc.token_count]
        ids = lib.store.token_ids(doc.id, 0, doc.token_count)
        expected, cuts = legacy, [3 * TINY_CHUNK, *range(SPAN, doc.token_count, SPAN), doc.token_count]
        with torch.no_grad():
            for start, end in zip(cuts[:-1], cuts[1:], strict=True):  # the first call ends at a call boundary
                _, expected = lib.bundle.model(torch.tensor([ids[start:end]]), expected, compute_logits=False)
        final = lib.state_at(doc, doc.token_count)
        assert_same_state(final, expected)
        for ours, theirs in zip(final.layers, reference.layers, strict=True):
            assert torch.allclose(torch.view_as_real(ours.ema), torch.view_as_real(theirs.ema), atol=1e-5)


def test_sigkill_mid_document_then_resume(tmp_path, model_dir, book):
    with Library(tmp_path / "clean.db", model_dir) as clean:
        reference = final_snapshot(clean, clean.ingest(book))
    db = tmp_path / "lib.db"
    script = (
        "import sys, time\n"
        "from megalodoc.ingest.library import Library\n"
        "lib = Library(sys.argv[1], sys.argv[2])\n"
        "slow = lambda p: time.sleep(0.05)\n"  # slow the writer so the kill lands mid-document
        "lib.ingest(sys.argv[3], on_progress=slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(db), str(model_dir), str(book)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with open_store(str(db)) as store:
                    docs = store.list_documents()
                    if docs and docs[0].committed_position >= 4 * TINY_CHUNK:
                        os.kill(proc.pid, signal.SIGKILL)
                        killed_at = docs[0].committed_position
                        break
            except Exception:  # the schema may still be being created
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed_at is not None, proc.stderr.read().decode()[-2000:]
    with Library(db, model_dir) as lib:
        doc = lib.documents()[0]
        assert doc.status == "ingesting" and doc.committed_position < reference.position
        assert doc.claimed_by is not None  # the dead worker's lease has not expired; its pid is gone
        outcome = lib.ingest_many([book])[0]
        assert outcome.status == "complete", outcome.message
        snaps = lib.snapshots(outcome.document)
        positions = [s.position for s in snaps]
        assert positions == sorted(set(positions))
        assert snaps[-1].blob_sha256 == reference.blob_sha256
        assert lib.store.check_integrity() == []


def test_many_paths_with_bad_inputs(tmp_path, model_dir, book):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(bytes(range(256)) * 20)
    corrupt = tmp_path / "broken.pdf"
    corrupt.write_bytes(b"%PDF-1.7\n1 0 obj <<\n" + b"garbage" * 50)
    paths = [tmp_path / "missing.txt", empty, book, binary, corrupt]
    with Library(tmp_path / "lib.db", model_dir) as lib:
        outcomes = lib.ingest_many(paths)
        by_path = {Path(o.path).name: o for o in outcomes}
        assert by_path["book.txt"].status == "complete"
        for name in ("missing.txt", "empty.txt", "blob.txt", "broken.pdf"):
            o = by_path[name]
            assert o.status == "failed" and name in o.message, (name, o.message)
        assert [d.name for d in lib.documents()] == ["book.txt"]
        assert lib.store.check_integrity() == []
        with pytest.raises(IngestError, match="missing.txt"):
            lib.ingest(tmp_path / "missing.txt")


def test_repository_locations_are_paths_and_lines(tmp_path, model_dir):
    repo = tmp_path / "json"
    repo.mkdir()
    for name in ("tool.py", "scanner.py"):  # two real files of the stdlib json package, to keep it quick
        (repo / name).write_bytes((STDLIB / "json" / name).read_bytes())
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "debug.log").write_text("ignored")
    with Library(tmp_path / "lib.db", model_dir, snapshot_every=4) as lib:
        events = []
        doc = lib.ingest(repo, on_progress=events.append)
        # tool.py, scanner.py and .gitignore itself; debug.log is ignored
        assert events[-1].unit_name == "file" and events[-1].units_done == events[-1].unit_count == 3
        assert doc.kind == "repo" and doc.status == "complete"
        loc = lib.store.locate(doc.id, doc.token_count - 1)
        assert loc.path is not None and loc.path.startswith("json/") and loc.line_start >= 1
        hits = lib.store.search("NUMBER_RE", document_id=doc.id)
        assert hits and any("json/" in (h.locations[0].display if h.locations else "") for h in hits)


def test_cli_ingest_and_list(tmp_path, model_dir, book, capsys):
    db = str(tmp_path / "cli.db")
    code = cli_main(["ingest", str(book), str(tmp_path / "nope.txt"), "--db", db, "--model", str(model_dir),
                     "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and "complete" in out and "nope.txt" in out and "1 of 2 documents read" in out
    assert cli_main(["list", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "book.txt" in listing and "complete" in listing


def test_model_without_tokenizer_is_refused(tmp_path, model_dir):
    meta = json.loads((model_dir / "config.json").read_text())
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in meta["weights"]:
        (bare / name).write_bytes((model_dir / name).read_bytes())
    meta["tokenizer"] = None
    (bare / "config.json").write_text(json.dumps(meta))
    with pytest.raises(IngestError, match="has no tokenizer.model"):
        Library(tmp_path / "lib.db", bare)


def test_pdfs_through_the_pipeline(tmp_path, model_dir, pdfkit):
    """Page locations for a real PDF, an empty-password PDF read, and clear failures for a password PDF, an
    image-only PDF and a Latin-1 text read with its fallback, without touching what is stored."""
    book_pdf = pdfkit.draw("book.pdf", pdfkit.book_pages(3))
    open_pdf = pdfkit.encrypt(pdfkit.draw("plain.pdf", pdfkit.book_pages(2)), "open.pdf", "")
    locked = pdfkit.encrypt(pdfkit.draw("secret.pdf", pdfkit.book_pages(1)), "locked.pdf", "s3cret")
    scan = pdfkit.image_only("scan.pdf")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e, na\xefve fa\xe7ade.\n".encode("latin-1") * 20)
    with Library(tmp_path / "lib.db", model_dir) as lib:
        first = lib.ingest(book_pdf)
        before = [(s.position, s.blob_sha256) for s in lib.snapshots(first)]
        outcomes = {Path(o.path).name: o for o in lib.ingest_many([open_pdf, locked, scan, latin])}
        assert outcomes["open.pdf"].status == "complete"
        assert outcomes["locked.pdf"].status == "failed" and "locked.pdf" in outcomes["locked.pdf"].message
        assert "password" in outcomes["locked.pdf"].message.lower()
        assert outcomes["scan.pdf"].status == "failed" and "OCR" in outcomes["scan.pdf"].message
        assert outcomes["latin1.txt"].status == "complete"
        assert lib.bundle.tokenizer.decode(lib.store.token_ids(outcomes["latin1.txt"].document.id, 0, 6)).startswith(
            "Café")
        assert [(s.position, s.blob_sha256) for s in lib.snapshots(first)] == before
        page = lib.store.locate(first.id, first.token_count - 1)
        assert page.page == 3 and page.display == "page 3"
