"""The Library tab: components and their events. Logic lives in `library_handlers.py`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from megalodoc.app.ui import library_handlers as h
from megalodoc.app.ui.context import AppContext
from megalodoc.app.ui.formatting import PROGRESS_HEADERS, markdown_text
from megalodoc.app.ui.guard import QUIET, guarded_by

INTRO = """Upload PDFs, text, Markdown, HTML or code files, or a .zip / .tar.gz of a repository. Reading
runs in the background: keep reading and asking in the Reader tab meanwhile. A cancelled document
resumes where it stopped."""
REFRESH_SECONDS = 2.0  # the documents list refreshes itself this often
PROGRESS = gr.Progress()  # Gradio fills in a per-request tracker for a parameter with this default


@dataclass
class LibraryTab:
    documents: gr.Dataframe
    picker: gr.Dropdown
    message: gr.Markdown


def _follow(ctx: AppContext, job_id: int, progress: gr.Progress, preface: str = "") -> Iterator[tuple[Any, ...]]:
    tasks: list = []
    for tasks in h.follow_job(ctx, job_id):
        percents = [t.percent or 0.0 for t in tasks]
        progress(sum(percents) / (100.0 * len(percents)), desc="Reading " + ", ".join(t.name for t in tasks))
        yield (h.progress_rows(tasks), preface + markdown_text(h.job_summary(tasks)), h.document_rows(ctx),
               gr.update(choices=h.document_choices(ctx)))
    for failure in h.failures(tasks):
        gr.Warning(failure)


def build_library_tab(ctx: AppContext) -> LibraryTab:
    guarded = guarded_by(ctx.gate)  # the server waits for these handlers' work when it stops
    gr.Markdown(INTRO)
    with gr.Row():
        files = gr.File(label="Files to read", file_count="multiple", scale=3)
        with gr.Column(scale=1):
            read = gr.Button("Read into the library", variant="primary")
            surprise = gr.Checkbox(False, label="Then compute the surprise curve (reads each document twice)")
    progress = gr.Dataframe(headers=PROGRESS_HEADERS, label="Reading progress", interactive=False, wrap=True)
    message = gr.Markdown()
    gr.Markdown("### Documents")
    documents = gr.Dataframe(headers=h.DOCUMENT_HEADERS, value=lambda: h.document_rows(ctx), interactive=False,
                             wrap=True, label="Documents in the library")
    with gr.Row():
        picker = gr.Dropdown(label="Document", choices=h.document_choices(ctx), scale=3, allow_custom_value=True)
        cancel = gr.Button("Cancel ingest", scale=1)
        resume = gr.Button("Resume ingest", scale=1)
        delete = gr.Button("Delete document", variant="stop", scale=1)
    timer = gr.Timer(REFRESH_SECONDS)
    outputs = [progress, message, documents, picker]

    @guarded
    def read_files(paths: list[str] | None, then_surprise: bool,
                   progress: gr.Progress = PROGRESS) -> Iterator[tuple[Any, ...]]:
        stored = h.stage_uploads(ctx, paths)
        job_id = None
        try:
            estimate = h.upload_estimate(ctx, stored)  # shown before reading starts, kept above its progress
            yield [], estimate, h.document_rows(ctx), gr.update(choices=h.document_choices(ctx))
            job_id = h.start_reading(ctx, stored, then_surprise)
        finally:
            if job_id is None:  # refused, failed or closed before reading started: the copies are free again
                ctx.unstage(stored)
        yield from _follow(ctx, job_id, progress, estimate + "\n\n")

    @guarded
    def resume_files(doc_id: int | None, progress: gr.Progress = PROGRESS) -> Iterator[tuple[Any, ...]]:
        yield from _follow(ctx, h.resume_ingest(ctx, doc_id), progress)

    @guarded
    def cancel_one(doc_id: int | None) -> str:
        said = h.cancel_ingest(ctx, doc_id)
        gr.Info(said)  # also as a notice: the reading's own progress soon writes over the message line
        return markdown_text(said)

    @guarded
    def delete_one(doc_id: int | None) -> tuple[Any, ...]:
        said = h.delete_document(ctx, doc_id)
        return markdown_text(said), h.document_rows(ctx), gr.update(choices=h.document_choices(ctx), value=None)

    read.click(read_files, [files, surprise], outputs, api_name="upload", concurrency_limit=None,
               show_progress_on=[progress])
    resume.click(resume_files, [picker], outputs, api_name="resume_ingest", concurrency_limit=None,
                 show_progress_on=[progress])
    cancel.click(cancel_one, [picker], [message], api_name="cancel_ingest", **QUIET)
    delete.click(delete_one, [picker], [message, documents, picker], api_name="delete_document", **QUIET)
    shown_choices = gr.State(None)  # the picker's choices as this page last got them

    @guarded
    def refresh(shown: list[tuple[str, int]] | None) -> tuple[Any, ...]:
        """The table, and the picker's choices when they changed (documents read from the command line or
        another page, ingests ending): built once with the page, they went stale."""
        choices = h.document_choices(ctx)
        if choices == shown:
            return h.document_rows(ctx), gr.skip(), gr.skip()
        return h.document_rows(ctx), gr.update(choices=choices), choices

    timer.tick(refresh, [shown_choices], [documents, picker, shown_choices], api_visibility="private", **QUIET)
    return LibraryTab(documents, picker, message)
