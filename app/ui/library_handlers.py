"""Handlers of the Library tab: upload and read in the background, follow progress, cancel, resume,
delete, and the list of documents. Plain functions of an AppContext; `build.py` wires them to the page."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from megalodoc.app.reader import DocumentInUseError
from megalodoc.app.ui.context import AppContext
from megalodoc.app.ui.errors import UiError
from megalodoc.app.ui.formatting import (
    human_bytes,
    live_status,
    markdown_text,
    progress_row,
    table_name,
)
from megalodoc.app.ui.jobs import FileTask
from megalodoc.app.ui.picked import picked_id
from megalodoc.app.ui.uploads import StoredUpload, upload_path
from megalodoc.ingest.estimate import estimate_ingest, model_costs
from megalodoc.storage import DocumentStatus, IngestStatus

DOCUMENT_HEADERS = ["ID", "Name", "Kind", "Status", "Tokens read", "Snapshots", "Size on disk", "Sessions"]
POLL_SECONDS = 0.5  # how often a following page refreshes the progress of its upload


def start_upload(ctx: AppContext, files: Sequence[str] | None, surprise: bool = False) -> int:
    """Copy the uploaded files into the data folder (size-capped) and start reading them in the
    background (with `surprise`, each document's surprise curve is computed right after); returns the
    job id."""
    return start_reading(ctx, stage_uploads(ctx, files), surprise)


def stage_uploads(ctx: AppContext, files: Sequence[str] | None) -> list[StoredUpload]:
    """Copy the uploaded files into the data folder (size-capped; nothing is copied when one is over).
    Their copies are held until `start_reading` (or `ctx.unstage`)."""
    return ctx.stage(list(files or []))


def start_reading(ctx: AppContext, stored: Sequence[StoredUpload], surprise: bool = False) -> int:
    """Start reading staged uploads in the background; returns the job id."""
    options = {"surprise": True} if surprise else {}
    return ctx.start_reading(stored, **options)


def upload_estimate(ctx: AppContext, stored: Sequence[StoredUpload]) -> str:
    """What reading the staged uploads will take (Markdown): total tokens, time and disk, then one line
    per upload, a refused one with the reason ingest would give. The model's speed and state size are
    measured on the first call and kept in `ctx` for the server's life."""
    with ctx.costs_lock:
        if ctx.ingest_costs is None:
            ctx.ingest_costs = model_costs(ctx.service.bundle)
        speed, state_bytes, chunk = ctx.ingest_costs
    estimate = estimate_ingest([s.path for s in stored], ctx.service.source_options, tokens_per_second=speed,
                               state_bytes=state_bytes, chunk_size=chunk, snapshot_every=ctx.service.snapshot_every,
                               tokenizer=ctx.service.tokenizer)
    lines = []
    for upload, item in zip(stored, estimate.inputs, strict=True):
        line = item.line().replace(str(upload.path), upload.name)  # the name they uploaded, not our path
        named = f"refused: {upload.name}: "
        if line.startswith(named):  # the reason names the file already: once is enough
            line = f"{upload.name}: refused: {line[len(named):]}"
        elif not line.startswith(upload.name):
            line = f"{upload.name}: {line}"
        lines.append(f"- {markdown_text(line)}")
    summary = estimate.summary()
    return "\n".join([summary[0].upper() + summary[1:] + ".", "", *lines])


def follow_job(ctx: AppContext, job_id: int, poll_seconds: float = POLL_SECONDS) -> Iterator[list[FileTask]]:
    """The job's files now and then every `poll_seconds` until all are done (the last item is final)."""
    while True:
        tasks = ctx.jobs.tasks(job_id)
        yield tasks
        if all(t.done for t in tasks):
            return
        time.sleep(poll_seconds)


def progress_rows(tasks: Sequence[FileTask]) -> list[list[str]]:
    return [progress_row(t) for t in tasks]


def job_summary(tasks: Sequence[FileTask]) -> str:
    """One line for the end of a job: what was read, what was cancelled, and what failed and why."""
    parts = []
    read = [t.name for t in tasks if t.status.ok]
    if read:
        parts.append("Read: " + ", ".join(read) + ".")
    cancelled = [t.name for t in tasks if t.status == IngestStatus.CANCELLED]
    if cancelled:
        parts.append("Cancelled (resume it from the list): " + ", ".join(cancelled) + ".")
    parts += [f"Not read here: {t.message}." for t in tasks if t.status == IngestStatus.BUSY]
    parts += [f"Could not read {t.message}" for t in tasks if t.status == IngestStatus.FAILED]
    return " ".join(parts) if parts else "Reading..."


def failures(tasks: Sequence[FileTask]) -> list[str]:
    """The messages of the files that could not be read (each names its file)."""
    return [t.message or f"{t.name}: failed" for t in tasks if t.status == IngestStatus.FAILED]


def document_rows(ctx: AppContext) -> list[list[object]]:
    """One row per stored document: id, name, kind, status (live progress while it is being read), tokens
    read, snapshots, their size on disk, and how many sessions use it."""
    store = ctx.service.store
    rows = []
    for doc in ctx.service.documents():
        snapshots = store.list_snapshots(doc.id)
        size = sum(s.size_bytes for s in snapshots)
        live = ctx.jobs.live_progress(doc.id)
        status = live_status(live) if live is not None else str(doc.status)
        if doc.status == DocumentStatus.FAILED and doc.error:
            status = f"failed: {doc.error}"
        total = f" of {doc.token_count:,}" if doc.token_count and doc.token_count != doc.committed_position else ""
        rows.append([doc.id, table_name(doc.name), doc.kind, status, f"{doc.committed_position:,}{total}",
                     len(snapshots), human_bytes(size), len(store.list_sessions(doc.id))])
    return rows


def document_choices(ctx: AppContext) -> list[tuple[str, int]]:
    """(label, id) pairs for a document picker, newest first."""
    return [(f"{table_name(d.name)} (id {d.id}, {d.status})", d.id)
            for d in reversed(ctx.service.documents())]


def _chosen(doc_id: int | str | None) -> int:
    return picked_id(doc_id, "choose a document in the list first", "documents")


def cancel_ingest(ctx: AppContext, doc_id: int | str | None) -> str:
    """Stop reading the document after the model call in progress; what was read so far is kept."""
    doc = ctx.service.store.get_document(_chosen(doc_id))
    if not ctx.jobs.cancel_document(doc.id):
        raise UiError(f"{doc.name} is not being read here now ({doc.status}); nothing to cancel")
    return (f"Cancelling {doc.name}: it stops after the model call in progress (at most 4 chunks); "
            "resume it later from the list.")


def resume_ingest(ctx: AppContext, doc_id: int | str | None) -> int:
    """Start reading a cancelled (or failed, or interrupted) document again from its last snapshot;
    returns the new job id. Only an upload of this server is read again: a document read from a file
    elsewhere (by the CLI, or by another machine sharing the store) is refused, saying how to resume it."""
    doc = ctx.service.store.get_document(_chosen(doc_id))
    if doc.status == DocumentStatus.COMPLETE:
        raise UiError(f"{doc.name} is already read completely")
    if ctx.jobs.live_progress(doc.id) is not None:
        raise UiError(f"{doc.name} is being read now")
    return ctx.jobs.start([(_uploaded_source(ctx, doc.name, doc.source_path), doc.name)])


def _uploaded_source(ctx: AppContext, name: str, source_path: str | None) -> Path:
    """The document's source, resolved (symlinks followed), when it is still in this server's uploads; else
    UiError: the web app reads nothing outside its data folder."""
    source = upload_path(source_path, ctx.data_dir)
    if source_path and source is None:
        raise UiError(f"{name} was read from {source_path}, outside this server's data folder, and this page "
                      f"reads only its own uploads: resume it on the machine that has the file with "
                      f"`megalodoc ingest {source_path}` (the same --db), or upload the file here")
    if source is None or not (source.is_file() or source.is_dir()):
        raise UiError(f"{name}: its uploaded file is no longer in the server's data folder; upload it again")
    return source


def delete_document(ctx: AppContext, doc_id: int | str | None) -> str:
    """Delete the document (refused, with the reason, while sessions use it or it is being read) and its
    uploaded copy in the data folder."""
    doc = ctx.service.store.get_document(_chosen(doc_id))
    if ctx.jobs.live_progress(doc.id) is not None:
        raise UiError(f"{doc.name} is being read now: cancel the ingest first")
    try:
        ctx.service.delete_document(doc.id)
    except DocumentInUseError as exc:  # said here: the store's refusal speaks of the Python API's force=True
        raise UiError(_in_use(ctx, doc.id, doc.name)) from exc
    ctx.remove_copy_unless_used(doc.source_path)  # kept while another upload has it staged or queued
    return f"Deleted {doc.name} (id {doc.id})."


def _in_use(ctx: AppContext, doc_id: int, name: str) -> str:
    """Why the document cannot be deleted, for the page: sessions use it, or another process (a
    `megalodoc ingest`, another server) is reading it now."""
    sessions = len(ctx.service.sessions(doc_id))
    if sessions:
        return (f"{name} (id {doc_id}) has {sessions} session(s): delete them first, under \"Sessions of this "
                "document\" in the Reader tab")
    reader = ctx.service.store.get_document(doc_id).claimed_by or "unknown"
    return (f"{name} (id {doc_id}) is being read by another process ({reader}), not by this server: wait for "
            "that reading to end, or stop it where it runs (Ctrl-C in its `megalodoc ingest`, or Cancel on the "
            "page of the server reading it), then delete it here")
