"""The launched app driven by gradio_client as a person would use it: upload a PDF, ask and get an answer
with a citation to a real page, come back in a new browser session and resume with the identical next
answer, branch, export; bad input shows a message and the app keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from app_support import running_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from megalodoc.app.ui.reader_handlers import GENERATED

SAMPLING = [12, 0.8, 0, 1.0, False, 3]  # answer length, temperature, top-k, top-p, greedy, seed


@pytest.fixture
def app(service, tmp_path):
    with running_app(service, tmp_path / "data") as (demo, url):
        yield demo, url


def read(client: Client, path: Path) -> int:
    """Upload and wait; returns the document id."""
    progress, summary, documents, _ = client.predict([handle_file(str(path))], api_name="/upload")
    assert progress["data"][0][1:3] == ["complete", "100%"], progress
    return documents["data"][0][0]


def ask(client: Client, doc_id: int, question: str, at: int) -> tuple[str, list, str, list]:
    """(evidence, conversation, status, session choices) after the answer finished streaming."""
    outputs = client.submit(doc_id, question, at, False, *SAMPLING, api_name="/ask")
    evidence, chat, status, _plot, sessions, _turns = outputs.result()
    return evidence, chat, status, sessions


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content if "text" in part)


def test_upload_ask_resume_branch_export(app, atlas_pdf):
    _, url = app
    first = Client(url, verbose=False)
    doc_id = read(first, atlas_pdf)
    slider, point, *_ = first.predict(doc_id, api_name="/pick_document")
    position = slider["value"]
    assert point == f"Reading point: token {position:,} of {position:,} (page 4)" and slider["maximum"] == position
    evidence, chat, status, sessions = ask(first, doc_id, "Who are the keepers of lighthouses?", position)
    assert "**1. page 3**" in evidence and "lighthouses and keepers" in evidence  # a citation to a real page
    assert text_of(chat[0]) == "Who are the keepers of lighthouses?" and text_of(chat[1]).startswith(GENERATED)
    _, chat_two, _, _ = ask(first, doc_id, "And the rivers?", position)
    [[label, session_id]] = sessions["choices"]
    assert "1 turn" in label

    # a person closes the browser and comes back: a new client session resumes from the list
    again = Client(url, verbose=False)
    restored = again.predict(session_id, api_name="/resume_session")
    assert restored[0]["value"] == doc_id and restored[1]["value"] == position
    assert [text_of(m) for m in restored[4]] == [text_of(m) for m in chat_two]
    # a second session asks the first question only; resumed in yet another client, its next answer
    # is the one the uninterrupted session gave
    other = Client(url, verbose=False)
    other.predict(doc_id, api_name="/pick_document")
    _, _, _, sessions = ask(other, doc_id, "Who are the keepers of lighthouses?", position)
    second = next(sid for _, sid in sessions["choices"] if sid != session_id)
    later = Client(url, verbose=False)
    later.predict(second, api_name="/resume_session")
    _, resumed_chat, _, _ = ask(later, doc_id, "And the rivers?", position)
    assert [text_of(m) for m in resumed_chat] == [text_of(m) for m in chat_two]

    # branch after the first turn of the first session, ask something else there
    turns = again.predict(session_id, api_name="/resume_session")[-1]["choices"]
    first_turn = turns[0][1]
    branched = again.predict(first_turn, api_name="/branch")
    assert len(branched[4]) == 2
    _, side, _, _ = ask(again, doc_id, "What is sold at markets?", position)
    assert [text_of(m) for m in side[:2]] == [text_of(m) for m in chat[:2]] and text_of(side[2]) == \
        "What is sold at markets?"

    exported = Path(again.predict(session_id, api_name="/export_session")["value"])
    text = exported.read_text()
    assert "Question: Who are the keepers of lighthouses?" in text and "Question: What is sold at markets?" in text
    assert "(after turn 1)" in text and "page 3" in text


def test_bad_input_shows_a_message_and_the_app_keeps_serving(app, atlas_pdf, service):
    _, url = app
    client = Client(url, verbose=False)
    doc_id = read(client, atlas_pdf)
    client.predict(doc_id, api_name="/pick_document")
    with pytest.raises(AppError, match="the question is empty"):
        client.predict(doc_id, "  ", 10, False, *SAMPLING, api_name="/ask")
    with pytest.raises(AppError, match="no page 42"):
        client.predict(doc_id, "p. 42", api_name="/go_to")
    with pytest.raises(AppError, match="Value -1.0 is less than minimum value 0.0"):  # checked by the slider
        client.predict(doc_id, "why?", 10, False, 12, -1.0, 0, 1.0, False, 3, api_name="/ask")
    # a fraction in a number box is refused, not rounded (a seed of 2.5 was stored as 2)
    with pytest.raises(AppError, match="answer length 12.5 must be a whole number; top-k 0.5 must be a whole "
                                       "number; seed 2.5 must be a whole number"):
        client.predict(doc_id, "why?", 10, False, 12.5, 0.8, 0.5, 1.0, False, 2.5, api_name="/ask")
    # the document is deleted in another tab while this one still shows it
    other = Client(url, verbose=False)
    said = other.predict(doc_id, api_name="/delete_document")[0]
    assert said.startswith("Deleted atlas.pdf")
    with pytest.raises(AppError, match=f"no document with id {doc_id}"):
        client.predict(doc_id, "why?", 10, False, *SAMPLING, api_name="/ask")
    start = time.monotonic()
    doc_id = read(client, atlas_pdf)  # still serving
    position = client.predict(doc_id, api_name="/pick_document")[0]["value"]
    evidence, chat, _, _ = ask(client, doc_id, "lighthouses", position)
    assert chat and time.monotonic() - start < 120
