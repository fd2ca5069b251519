"""A stopping server first cancels its readings and waits for the handler work in flight: Python stops
the worker threads still running at exit, and one stopped inside torch aborted the process ("terminate
called without an active exception", status -6, 2 runs in 3 with a reading under way)."""

from __future__ import annotations

import threading
import time

import gradio as gr
import pytest

from megalodoc.app.ui import library_handlers as h
from megalodoc.app.ui.guard import HandlerGate, guarded
from megalodoc.app.ui.jobs import IngestJobs

WAIT = 120.0


def test_close_waits_for_a_running_handler_and_refuses_new_ones() -> None:
    gate = HandlerGate()
    inside, leave = threading.Event(), threading.Event()
    done = []

    @guarded
    def plain(x: int) -> int:  # without a gate: counted nowhere, never refused
        return x + 1

    def slow() -> str:
        inside.set()
        leave.wait(WAIT)
        done.append("slow")
        return "answer"

    handler = guarded(slow, gate=gate)
    worker = threading.Thread(target=handler)
    worker.start()
    assert inside.wait(WAIT) and gate.running == 1
    assert gate.close(0.2) is False  # still running: not waited for beyond the timeout
    with pytest.raises(gr.Error, match="the server is stopping"):
        handler()
    threading.Timer(0.3, leave.set).start()
    started = time.monotonic()
    assert gate.close(WAIT) is True and done == ["slow"] and time.monotonic() - started >= 0.2
    worker.join(WAIT)
    assert gate.running == 0 and plain(1) == 2


def test_a_stream_under_way_runs_to_its_end_while_new_ones_are_refused() -> None:
    # an answer streams in items every 0.1 s and stores its turn at the end: refusing its next item once
    # the server began stopping lost the answer
    gate = HandlerGate()
    seen, stored, cleaned = [], [], []

    def stream():
        try:
            for item in range(3):
                seen.append(gate.running)
                yield item
            stored.append("turn")
        finally:
            cleaned.append(gate.running)

    answer = guarded(stream, gate=gate)()
    assert next(answer) == 0 and gate.running == 1  # counted between items too
    assert gate.close(0.0) is False  # the server begins stopping: the stream is still under way
    with pytest.raises(gr.Error, match="the server is stopping"):
        next(guarded(stream, gate=gate)())  # a new one is refused before any of its code runs
    assert list(answer) == [1, 2] and stored == ["turn"]  # the one under way finishes
    assert gate.running == 0 and gate.close(0.0) is True
    assert seen == [1, 1, 1] and cleaned == [1]
    left = HandlerGate()
    abandoned = guarded(stream, gate=left)()
    next(abandoned)
    abandoned.close()  # the page went away mid-stream: its clean-up runs now, and it no longer counts
    assert len(cleaned) == 2 and left.running == 0


def test_shut_down_cancels_a_reading_and_releases_its_document(ctx, long_text) -> None:
    reading = threading.Event()

    def slow_progress(progress) -> None:  # the tiny model would otherwise finish before the stop
        reading.set()
        time.sleep(0.2)

    service = ctx.service
    ctx.jobs = IngestJobs(lambda path, on_progress=None, **options: service.ingest(
        path, on_progress=lambda p: (on_progress(p), slow_progress(p)), **options))
    job = h.start_upload(ctx, [str(long_text)])
    assert reading.wait(WAIT)
    assert ctx.shut_down(WAIT) is True
    [task] = ctx.jobs.tasks(job)
    assert task.status == "cancelled", task
    doc = service.store.get_document(task.document_id)
    assert doc.status == "cancelled" and 0 < doc.committed_position and doc.claimed_by is None
    with pytest.raises(gr.Error, match="the server is stopping"):  # and the page refuses new work
        guarded(lambda: None, gate=ctx.gate)()
