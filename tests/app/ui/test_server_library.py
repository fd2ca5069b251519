"""The launched app driven by gradio_client: upload real files, follow progress to 100%, and bad input
that shows a message while the app keeps serving."""

from __future__ import annotations

import time

import httpx
import pytest
from app_support import running_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError


@pytest.fixture
def app(service, tmp_path):
    with running_app(service, tmp_path / "data", max_upload_mb=1) as (demo, url):
        yield demo, Client(url, verbose=False)


def upload(client: Client, *paths):
    """Submit an upload and follow it; returns (the progress bar values seen while polling, every output
    the upload streamed)."""
    job = client.submit([handle_file(str(p)) for p in paths], api_name="/upload")
    seen = []
    while not job.done():
        status = job.status()
        seen += [unit.progress for unit in status.progress_data or [] if unit.progress is not None]
        time.sleep(0.05)
    return seen, job.outputs()


def test_upload_a_pdf_and_progress_reaches_100_percent(app, atlas_pdf):
    demo, client = app
    seen, outputs = upload(client, atlas_pdf)
    progress, summary, documents, picker = outputs[-1]
    assert progress["data"] == [["atlas.pdf", "complete", "100%", progress["data"][0][3], progress["data"][0][4], "",
                                 "4/4 pages", ""]]
    assert summary.startswith("Estimate: 1 input, about ") and summary.endswith("\n\nRead: atlas.pdf.")
    assert outputs[0][1] == summary.rpartition("\n\n")[0]  # the estimate comes first, before any reading
    assert "- atlas.pdf: pdf, 4 pages, about " in summary and str(demo.megalodoc_context.data_dir) not in summary
    percents = [float(out[0]["data"][0][2].rstrip("%")) for out in outputs if out[0]["data"] and out[0]["data"][0][2]]
    assert percents[-1] == 100.0 and percents == sorted(percents)  # the table counts up to 100%
    # the bar, when a poll caught it (a short read may finish between polls), counts up too
    assert all(0.0 <= value <= 1.0 for value in seen) and seen == sorted(seen)
    [row] = documents["data"]
    assert row[1:4] == ["atlas.pdf", "pdf", "complete"]
    assert picker["choices"] == [[f"atlas.pdf (id {row[0]}, complete)", row[0]]]
    # the copy the server read lies in its own data folder
    ctx = demo.megalodoc_context
    assert [p.name for p in (ctx.data_dir / "uploads").glob("*/*")] == ["atlas.pdf"]


def test_bad_uploads_show_a_message_and_the_app_keeps_serving(app, atlas_pdf, tmp_path):
    _, client = app
    corrupt = tmp_path / "scan.pdf"
    corrupt.write_bytes(b"%PDF-1.4\n" + b"garbage" * 200)
    docx = tmp_path / "letter.docx"
    docx.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    progress, summary, _, _ = upload(client, corrupt, docx)[1][-1]
    assert [row[1] for row in progress["data"]] == ["failed", "failed"]
    assert "Could not read scan.pdf: " in summary and "Could not read letter.docx: .docx documents are not" in summary
    # the server itself refuses a file over the limit (the client would refuse it before sending)
    refused = httpx.post(f"{client.src}gradio_api/upload", files={"files": ("big.txt", b"y" * (2 * 2**20))})
    assert refused.status_code == 413 and "file size" in refused.text.lower()
    with pytest.raises(AppError, match="choose a document"):
        client.predict(None, api_name="/delete_document")
    progress, summary, _, _ = upload(client, atlas_pdf)[1][-1]  # still serving
    assert summary.endswith("\n\nRead: atlas.pdf.")
