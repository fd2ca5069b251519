"""Two uploads of the same content under the same name share one copy in the data folder. Deleting a
document, or dropping a copy whose content was read under another name, must not remove that copy while
another upload has it staged or queued: the browser tester's second upload of a PDF another page deleted
meanwhile failed with "no such file or folder"."""

from __future__ import annotations

import shutil
import threading

from megalodoc.app.ui import library_handlers as h
from megalodoc.app.ui.jobs import IngestJobs

WAIT = 120.0  # seconds a job may take on a busy 2-core machine before the test gives up


def finished(ctx, job_id):
    assert ctx.jobs.wait(job_id, WAIT), f"job {job_id} still running after {WAIT} s"
    return ctx.jobs.tasks(job_id)


def test_a_staged_upload_keeps_its_copy_when_another_page_deletes_the_document(ctx, atlas_pdf):
    [first] = finished(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    [staged] = h.stage_uploads(ctx, [str(atlas_pdf)])  # estimate shown, reading not started yet
    assert staged.path == first.path
    assert h.delete_document(ctx, first.document_id) == f"Deleted atlas.pdf (id {first.document_id})."
    assert staged.path.is_file()  # still needed by the staged upload
    [again] = finished(ctx, h.start_reading(ctx, [staged]))
    assert again.status == "complete", again.message
    doc = ctx.service.store.get_document(again.document_id)
    assert doc.id != first.document_id and doc.source_path == str(staged.path) and staged.path.is_file()
    # with nothing else holding it, deleting the new document removes the copy as before
    h.delete_document(ctx, doc.id)
    assert not staged.path.exists() and ctx.staged == {}


def test_a_queued_upload_keeps_its_copy_when_another_page_deletes_the_document(ctx, atlas_pdf, long_text):
    [first] = finished(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    reading, release = threading.Event(), threading.Event()

    def ingest(path, on_progress=None, **options):
        def held(progress) -> None:  # the job's first file waits at its first progress report
            reading.set()
            release.wait(WAIT)
            on_progress(progress)

        return ctx.service.ingest(path, on_progress=held if path.name == "long.txt" else on_progress, **options)

    ctx.jobs = IngestJobs(ingest)
    ctx.jobs.on_finished = ctx.drop_duplicate_copy
    job = h.start_upload(ctx, [str(long_text), str(atlas_pdf)])  # the PDF waits behind the text
    assert reading.wait(WAIT)
    h.delete_document(ctx, first.document_id)
    assert first.path.is_file()
    release.set()
    text, pdf = finished(ctx, job)
    assert text.status == "complete" and pdf.status == "complete", pdf.message
    assert ctx.service.store.get_document(pdf.document_id).source_path == str(first.path)


def test_a_copy_read_under_another_name_stays_while_a_second_upload_of_it_is_staged(ctx, atlas_pdf, tmp_path):
    [first] = finished(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    renamed = tmp_path / "atlas (copy).pdf"
    shutil.copyfile(atlas_pdf, renamed)
    [one] = h.stage_uploads(ctx, [str(renamed)])
    [two] = h.stage_uploads(ctx, [str(renamed)])  # a second page uploads the same file
    assert one.path == two.path != first.path
    [done] = finished(ctx, h.start_reading(ctx, [one]))
    assert done.status == "already-complete" and one.path.is_file()  # kept: the second upload needs it
    [done_too] = finished(ctx, h.start_reading(ctx, [two]))
    assert done_too.status == "already-complete", done_too.message
    assert not two.path.exists() and first.path.is_file() and ctx.staged == {}


def test_an_upload_refused_before_reading_releases_its_copy(ctx, atlas_pdf):
    [first] = finished(ctx, h.start_upload(ctx, [str(atlas_pdf)]))
    stored = h.stage_uploads(ctx, [str(atlas_pdf)])
    ctx.unstage(stored)  # what the page does when the estimate fails or the page closes before reading
    h.delete_document(ctx, first.document_id)
    assert not first.path.exists() and ctx.staged == {}
