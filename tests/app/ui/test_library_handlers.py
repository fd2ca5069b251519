"""The Library tab's handlers called directly: real uploads read by a tiny model into a real SQLite store."""

from __future__ import annotations

import pytest

from megalodoc.app.ui import library_handlers as h
from megalodoc.app.ui.context import AppContext
from megalodoc.app.ui.errors import UiError, expected_errors
from megalodoc.app.ui.jobs import IngestJobs

WAIT = 120.0  # seconds a job may take on a busy 2-core machine before the test gives up


def finished_tasks(ctx: AppContext, job_id: int):
    assert ctx.jobs.wait(job_id, WAIT), f"job {job_id} still running after {WAIT} s: {ctx.jobs.tasks(job_id)}"
    return ctx.jobs.tasks(job_id)


def test_upload_reads_in_the_background_and_lists_the_document(ctx, atlas_pdf):
    job = h.start_upload(ctx, [str(atlas_pdf)])
    [task] = finished_tasks(ctx, job)
    assert task.status == "complete" and task.percent == 100.0 and task.name == "atlas.pdf"
    assert task.progress.unit_name == "page" and task.progress.units_done == 4 and task.progress.unit_count == 4
    # the file read is the copy inside the data folder, not the upload
    assert task.path.is_relative_to(ctx.data_dir / "uploads") and task.path.read_bytes() == atlas_pdf.read_bytes()
    [row] = h.document_rows(ctx)
    doc = ctx.service.store.get_document(task.document_id)
    assert row[:4] == [doc.id, "atlas.pdf", "pdf", "complete"]
    assert row[4] == f"{doc.committed_position:,}" and doc.committed_position > 0
    assert row[5] == len(ctx.service.snapshots(doc)) > 1 and row[6].endswith("KiB") and row[7] == 0
    assert h.document_choices(ctx) == [(f"atlas.pdf (id {doc.id}, complete)", doc.id)]
    assert "Read: atlas.pdf." in h.job_summary([task])


def test_the_same_content_under_another_name_keeps_no_second_copy(ctx, atlas_pdf, tmp_path):
    [first] = finished_tasks(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    copy = tmp_path / "atlas (copy).pdf"
    copy.write_bytes(atlas_pdf.read_bytes())
    [again] = finished_tasks(ctx, h.start_upload(ctx, [str(copy)]))
    assert again.status == "already-complete" and "as atlas.pdf" in again.message
    # the second upload's copy was kept in the data folder for nothing; the first one's stays
    assert not again.path.exists() and first.path.exists() and again.path.parent == first.path.parent
    [again_same] = finished_tasks(ctx, h.start_upload(ctx, [str(atlas_pdf)]))  # the same name: the same copy
    assert again_same.status == "already-complete" and again_same.path == first.path and first.path.exists()


def test_progress_rows_show_rate_eta_and_pages(ctx, atlas_pdf):
    tasks = finished_tasks(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    [row] = h.progress_rows(tasks)
    assert row[0] == "atlas.pdf" and row[1] == "complete" and row[2] == "100%"
    assert int(row[3].replace(",", "")) == tasks[0].progress.tokens_done > 0
    assert float(row[4].replace(",", "")) > 0 and row[6] == "4/4 pages"


def test_the_same_file_twice_is_read_once(ctx, atlas_pdf):
    finished_tasks(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    [again] = finished_tasks(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    doc_id = h.document_rows(ctx)[0][0]
    assert again.status == "already-complete" and again.message == f"already in the library as atlas.pdf (id {doc_id})"
    assert len(h.document_rows(ctx)) == 1


def test_a_bad_file_fails_with_its_cause_and_the_others_are_read(ctx, atlas_pdf, tmp_path):
    corrupt = tmp_path / "broken.pdf"
    corrupt.write_bytes(b"this is not a pdf at all\n" * 10)
    binary = tmp_path / "image.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    tasks = finished_tasks(ctx, h.start_upload(ctx, [str(corrupt), str(binary), str(atlas_pdf)]))
    assert [t.status for t in tasks] == ["failed", "failed", "complete"]
    assert tasks[0].message.startswith("broken.pdf: ") and "PDF" in tasks[0].message
    assert tasks[1].message.startswith("image.bin: ") and "binary" in tasks[1].message
    assert str(ctx.data_dir) not in tasks[0].message  # the person sees the name they uploaded, not our path
    assert h.failures(tasks) == [tasks[0].message, tasks[1].message]
    assert f"Could not read {tasks[0].message}" in h.job_summary(tasks)


def test_uploads_over_the_limit_are_refused_before_anything_is_copied(ctx, atlas_pdf, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("x" * (ctx.max_upload_bytes + 1))
    with pytest.raises(UiError, match=r"big.txt: 1.0 MiB is over the upload limit of 1 MiB"):
        h.start_upload(ctx, [str(atlas_pdf), str(big)])
    assert list((ctx.data_dir / "uploads").iterdir()) == []
    with pytest.raises(UiError, match="no file given"):
        h.start_upload(ctx, [])


def test_cancel_then_resume_ends_like_an_uninterrupted_read(service, tmp_path, long_text, tiny_model_dir):
    ctx = AppContext.create(service, tmp_path / "data")

    def ingest_cancelled_at_first_progress(path, on_progress, cancel):
        def progress(p):
            on_progress(p)
            assert h.cancel_ingest(ctx, p.document_id).startswith("Cancelling long.txt")

        return service.ingest(path, on_progress=progress, cancel=cancel)

    ctx.jobs = IngestJobs(ingest_cancelled_at_first_progress)
    [task] = finished_tasks(ctx, h.start_upload(ctx, [str(long_text)]))
    assert task.status == "cancelled" and "resume it later" in task.message
    doc = service.store.get_document(task.document_id)
    assert doc.status == "cancelled" and 0 < doc.committed_position
    with pytest.raises(UiError, match="not being read here now"):
        h.cancel_ingest(ctx, doc.id)

    ctx.jobs = IngestJobs(service.ingest)
    [resumed] = finished_tasks(ctx, h.resume_ingest(ctx, doc.id))
    assert resumed.status == "complete" and resumed.progress.tokens_done > doc.committed_position
    done = service.store.get_document(doc.id)
    with type(service)(tmp_path / "fresh.db", tiny_model_dir) as fresh:
        whole = fresh.ingest(long_text)
    assert done.committed_position == whole.committed_position
    assert service.store.token_ids(doc.id, 0, done.committed_position) == fresh_ids(tmp_path, whole)
    with pytest.raises(UiError, match="already read completely"):
        h.resume_ingest(ctx, doc.id)


def fresh_ids(tmp_path, whole):
    from megalodoc.storage import open_store

    with open_store(str(tmp_path / "fresh.db")) as store:
        return store.token_ids(whole.id, 0, whole.committed_position)


def test_delete_is_refused_while_a_session_uses_the_document(ctx, atlas_pdf):
    [task] = finished_tasks(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    store = ctx.service.store
    session = store.create_session(task.document_id, 10)
    with pytest.raises(expected_errors(), match=r"atlas.pdf .*1 session\(s\): delete them first, under") as refused:
        h.delete_document(ctx, task.document_id)
    assert "force" not in str(refused.value)  # the Python API's option means nothing on the page
    assert task.path.exists() and len(h.document_rows(ctx)) == 1
    store.delete_session(session.id)
    assert h.delete_document(ctx, task.document_id) == f"Deleted atlas.pdf (id {task.document_id})."
    assert h.document_rows(ctx) == [] and not task.path.exists()
    with pytest.raises(expected_errors(), match="not found|no document"):
        h.delete_document(ctx, task.document_id)
    with pytest.raises(UiError, match="choose a document"):
        h.delete_document(ctx, None)


def test_the_estimate_before_reading_names_tokens_time_disk_and_refusals(ctx, long_text, tmp_path):
    docx = tmp_path / "letter.docx"
    docx.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    stored = h.stage_uploads(ctx, [str(long_text), str(docx)])
    text = h.upload_estimate(ctx, stored)
    summary, _, *lines = text.split("\n")
    assert summary.startswith("Estimate: 2 inputs (1 refused), about ") and " tokens, " in summary
    assert " tokens/s, " in summary and summary.endswith(" of disk.")
    assert lines[0].startswith("- long.txt: text, ") and " tokens, " in lines[0] and lines[0][-2:] in ("KB", "MB")
    assert lines[1].startswith("- letter.docx: refused: ") and ".docx documents are not" in lines[1]
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    [line] = h.upload_estimate(ctx, h.stage_uploads(ctx, [str(empty)])).split("\n")[2:]
    assert line.startswith("- empty.txt: refused: ") and line.count("empty.txt") == 1, line  # named twice before
    assert str(ctx.data_dir) not in text  # the names they uploaded, not the server's paths
    # the model's costs are measured once per server and kept; a second estimate reuses them
    costs = ctx.ingest_costs
    assert costs is not None and costs[0] > 0 and costs[1] > 0 and costs[2] == ctx.service.bundle.chunk_size
    assert h.upload_estimate(ctx, stored[:1]).startswith("Estimate: 1 input, about ") and ctx.ingest_costs is costs
    # the tokens estimated are those of the text: within a factor of two of what reading it gives
    tokens = int(lines[0].split("about ")[1].split(" tokens")[0].replace(",", ""))
    doc = ctx.service.store.get_document(finished_tasks(ctx, h.start_reading(ctx, stored[:1]))[0].document_id)
    assert doc.token_count / 2 <= tokens <= doc.token_count * 2


def test_a_file_another_upload_is_reading_is_not_called_failed(service, long_text):
    # two pages uploading the same file: the second got "failed" and "Could not read another worker is
    # reading this document", naming no file. The first reading is held at its first progress report
    # until the second has finished.
    import threading

    from megalodoc.app.ui.jobs import IngestJobs

    first_reading, second_done = threading.Event(), threading.Event()

    def ingest(path, on_progress=None, **options):
        def held(progress) -> None:
            first_reading.set()  # reported only once the document is claimed
            second_done.wait(WAIT)
            if on_progress is not None:
                on_progress(progress)

        return service.ingest(path, on_progress=held if threading.current_thread().name.endswith("-1") else
                              on_progress, **options)

    jobs = IngestJobs(ingest)
    first = jobs.start([(long_text, "long.txt")])
    assert first_reading.wait(WAIT)
    second = jobs.start([(long_text, "long (copy).txt")])
    assert jobs.wait(second, WAIT)
    second_done.set()
    [busy] = jobs.tasks(second)
    assert busy.status == "busy" and busy.message.startswith("long (copy).txt: being read by another upload")
    assert h.failures([busy]) == [] and "Not read here: long (copy).txt: being read" in h.job_summary([busy])
    assert jobs.wait(first, WAIT) and jobs.tasks(first)[0].status == "complete"


@pytest.mark.parametrize("typed", ["99999999999999999999", "9223372036854775808", 2**70])
def test_an_id_typed_beyond_what_the_store_holds_is_not_found(ctx, typed):
    # pickers take typed ids: one past SQLite's 64-bit range was "Unexpected error (OverflowError ...)"
    for handler in (h.delete_document, h.cancel_ingest, h.resume_ingest):
        with pytest.raises(expected_errors(), match=f"no document with id {typed}"):
            handler(ctx, typed)


def test_a_long_name_is_shortened_in_the_tables_and_pickers_but_kept_whole(ctx, long_text, tmp_path):
    # a 120-character stored name without spaces pushed the Status column out of the Documents table
    named = tmp_path / ("chapter-" * 13 + "final.txt")
    named.write_bytes(long_text.read_bytes())
    [task] = finished_tasks(ctx, h.start_upload(ctx, [str(named)]))
    doc = ctx.service.store.get_document(task.document_id)
    assert doc.name == named.name and len(doc.name) == 113  # the whole name is stored
    [row] = h.document_rows(ctx)
    [(label, _)] = h.document_choices(ctx)
    [progress] = h.progress_rows([task])
    for shown in (row[1], label.rpartition(" (id ")[0], progress[0]):
        assert len(shown) <= 60 and shown.startswith("chapter-chapter-") and shown.endswith("final.txt"), shown
        assert "..." in shown


def test_a_failing_after_file_hook_does_not_stop_the_job(service, atlas_pdf, long_text):
    # the hook (dropping a duplicate copy) touches the store and the disk; an error there killed the job's
    # thread, leaving its next file queued forever and the page polling it
    jobs = IngestJobs(service.ingest)

    def failing(task, record):
        raise OSError("disk gone")

    jobs.on_finished = failing
    job = jobs.start([(atlas_pdf, "atlas.pdf"), (long_text, "long.txt")])
    assert jobs.wait(job, WAIT), jobs.tasks(job)
    assert [t.status for t in jobs.tasks(job)] == ["complete", "complete"] and jobs.running() == []
