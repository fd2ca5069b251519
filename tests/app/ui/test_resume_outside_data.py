"""Resume in the web app reads only the server's own uploads: a document read by the CLI (or by another
machine sharing the store) from a file elsewhere is refused with where it was read from and how to
resume it, and nothing there is read, also through a symlink in the uploads folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from megalodoc.app.ui import library_handlers as h
from megalodoc.app.ui.context import AppContext
from megalodoc.app.ui.errors import UiError
from megalodoc.app.ui.jobs import IngestJobs


def unread_document(ctx: AppContext, source: Path) -> int:
    """A document recorded as read from `source`, interrupted before its end (as a stopped CLI leaves it)."""
    source.resolve().write_text("SECRET-TOKEN=hunter2 this file is not an upload\n")
    bundle = ctx.service.bundle
    doc = ctx.service.store.create_document("a" * 64, source.name, "text", str(source),
                                            bundle.require_tokenizer().fingerprint, bundle.fingerprint)
    return doc.id


def refuse_reading(ctx: AppContext) -> list[Path]:
    read: list[Path] = []

    def ingest(path, on_progress, cancel):  # noqa: ANN001, ARG001 (the jobs' ingest signature)
        read.append(path)
        raise AssertionError(f"{path} was read")

    ctx.jobs = IngestJobs(ingest)
    return read


def test_a_document_read_from_outside_the_data_folder_is_not_resumed_here(ctx, tmp_path):
    read = refuse_reading(ctx)
    outside = tmp_path / "elsewhere" / "victim.txt"
    outside.parent.mkdir()
    doc_id = unread_document(ctx, outside)
    with pytest.raises(UiError) as refused:
        h.resume_ingest(ctx, doc_id)
    message = str(refused.value)
    assert f"was read from {outside}, outside this server's data folder" in message
    assert f"megalodoc ingest {outside}" in message
    assert read == [] and ctx.service.store.get_document(doc_id).committed_position == 0


def test_a_symlink_in_the_uploads_folder_to_a_file_elsewhere_is_not_resumed(ctx, tmp_path):
    read = refuse_reading(ctx)
    outside = tmp_path / "victim.txt"
    link = ctx.data_dir / "uploads" / "0123456789abcdef" / "victim.txt"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    doc_id = unread_document(ctx, link)
    with pytest.raises(UiError, match="outside this server's data folder"):
        h.resume_ingest(ctx, doc_id)
    assert read == []
