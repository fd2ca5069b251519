"""Picks reported twice, as Gradio's Dropdown reports a choice from its list (once for the choice, once
for the blur after it), sent side by side through the launched app's queue: one report sets the page up
(the Session picker emptied for the new document, the turn picker for the new session), the other only
lists again, so a session or turn the person picked from the first answer's list stays picked. A resumed
session's document and session count as picked."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from app_support import running_app
from gradio_client import Client

from megalodoc.app.ui import library_handlers as lib
from megalodoc.app.ui import reader_handlers as h
from megalodoc.app.ui.settings_handlers import sampling_settings

SAMPLING = sampling_settings(6, 0.8, 0, 1.0, False, 3)
SESSIONS = 3  # the Session picker's place among /pick_document's outputs (the State ones are not sent)


def read(ctx, *paths) -> list[int]:
    job = lib.start_upload(ctx, [str(p) for p in paths])
    assert ctx.jobs.wait(job, 120)
    return [task.document_id for task in ctx.jobs.tasks(job)]


@pytest.fixture
def library(ctx, atlas_pdf, long_text, tmp_path):
    """(url, document with a session of two turns, that session, another document)."""
    doc_id, other = read(ctx, atlas_pdf, long_text)
    at = ctx.service.document(doc_id).committed_position
    *_, one = h.ask(ctx, doc_id, "Who keeps the lighthouses?", at, False, SAMPLING, None, None)
    *_, two = h.ask(ctx, doc_id, "And the rivers?", at, False, SAMPLING, one.session_id, one.after_turn)
    with running_app(ctx.service, tmp_path / "app-data") as (_, url):
        yield url, doc_id, two.session_id, other


def twice(client: Client, value: int, api_name: str) -> list[tuple[Any, ...]]:
    """Both reports of one pick, sent at once."""
    jobs = [client.submit(value, api_name=api_name) for _ in range(2)]
    return [job.result() for job in jobs]


def resets(update: dict) -> bool:
    """Whether a picker's update sets its value (a repeat only lists its choices again)."""
    return "value" in update


def test_a_document_picked_twice_resets_the_session_picker_once(library):
    url, doc_id, session_id, _ = library
    client = Client(url, verbose=False)
    picks = twice(client, doc_id, "/pick_document")
    assert sorted(resets(outputs[SESSIONS]) for outputs in picks) == [False, True], picks
    for outputs in picks:  # both list the document's session
        assert [sid for _, sid in outputs[SESSIONS]["choices"]] == [session_id]
    repeat = next(outputs for outputs in picks if not resets(outputs[SESSIONS]))
    assert not resets(repeat[0])  # the reading point (and the conversation) stay as they are


def test_a_document_picked_again_after_it_grew_offers_its_new_end(library, ctx):
    url, doc_id, _, _ = library
    client = Client(url, verbose=False)
    first = client.predict(doc_id, api_name="/pick_document")[0]
    length = first["maximum"]
    grown = h.document_length
    try:  # the document read further meanwhile (an ingest still running)
        h.document_length = lambda ctx, doc: grown(ctx, doc) + 500
        again = client.predict(doc_id, api_name="/pick_document")[0]
    finally:
        h.document_length = grown
    assert first["value"] == length and again == {"maximum": length + 500, "__type__": "update"}


def test_one_pages_slow_pick_does_not_hold_up_another_pages_pick(library):
    url, doc_id, _, other = library
    slow, quick = Client(url, verbose=False), Client(url, verbose=False)
    started, go_on = threading.Event(), threading.Event()
    length = h.document_length

    def held(ctx, doc):
        if doc == doc_id:  # the first page's pick waits here until the second page's pick is done
            started.set()
            go_on.wait(60)
        return length(ctx, doc)

    h.document_length = held
    try:
        waiting = slow.submit(doc_id, api_name="/pick_document")
        assert started.wait(60)
        began = time.monotonic()
        quick.predict(other, api_name="/pick_document")
        took = time.monotonic() - began
    finally:
        go_on.set()
        h.document_length = length
    waiting.result()
    assert took < 30, f"another page's pick waited {took:.1f} s for this one"


def test_a_session_picked_twice_resets_the_turn_picker_once(library):
    url, doc_id, session_id, _ = library
    client = Client(url, verbose=False)
    client.predict(doc_id, api_name="/pick_document")
    picks = twice(client, session_id, "/pick_session")
    assert sorted(resets(update) for update in picks) == [False, True], picks
    for update in picks:
        assert len(update["choices"]) == 2  # both list the session's two turns


def test_a_resumed_session_counts_as_picked(library):
    url, doc_id, session_id, other = library
    client = Client(url, verbose=False)
    client.predict(session_id, api_name="/resume_session")
    assert not resets(client.predict(doc_id, api_name="/pick_document")[SESSIONS])
    assert not resets(client.predict(session_id, api_name="/pick_session"))
    # another document is a new pick: its (empty) list of sessions, nothing picked
    assert client.predict(other, api_name="/pick_document")[SESSIONS] == {"choices": [], "value": None,
                                                                          "__type__": "update"}
