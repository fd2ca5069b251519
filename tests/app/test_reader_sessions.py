"""Sessions of the reader service: turns store their state; resume continues exactly; branch; export."""

from __future__ import annotations

import pytest
import torch

from megalodoc.app.reader import DocumentInUseError, ReaderService, SessionNotFoundError
from megalodoc.model import state_from_bytes
from megalodoc.model.boundary import call_span, run_aligned

ASK = {"max_new_tokens": 10}


def two_turns(service, doc, resume_between: bool, db=None, model=None):
    """Ask, then continue, then ask again at 60% of the book; optionally reopen the service (a new
    process would do the same: nothing is kept in memory) and resume the session between turns."""
    point = service.start_session(doc, at=0.6, title="reading")
    first = service.ask(doc, "How is text wrapped?", session=point, seed=11, sampling=ASK)
    assert first.text is not None and first.turn is not None
    more = service.continue_(None, max_tokens=5, seed=12, session=first.point)
    assert more.token_ids and more.turn.parent_turn_id == first.turn.id
    if resume_between:
        service.close()
        service = ReaderService(db, model)
        resumed = service.resume(point.session_id)
        assert resumed.after_turn == more.turn.id and [t.id for t in resumed.history] == [first.turn.id, more.turn.id]
        nxt = resumed
    else:
        nxt = more.point
    second = service.ask(None, "What does dedent remove?", session=nxt, seed=13, sampling=ASK)
    return service, first, more, second


def test_resume_gives_bit_identical_tokens_to_an_uninterrupted_session(tmp_path, tiny_model_dir, book):
    straight = ReaderService(tmp_path / "a.db", tiny_model_dir)
    doc = straight.ingest(book)
    straight, s_first, s_more, s_second = two_turns(straight, doc, resume_between=False)
    interrupted = ReaderService(tmp_path / "b.db", tiny_model_dir)
    doc_b = interrupted.ingest(book)
    interrupted, i_first, i_more, i_second = two_turns(interrupted, doc_b, True, tmp_path / "b.db", tiny_model_dir)
    try:
        assert i_first.token_ids == s_first.token_ids and i_more.token_ids == s_more.token_ids
        assert i_second.prompt_ids == s_second.prompt_ids
        assert i_second.token_ids == s_second.token_ids and len(s_second.token_ids) >= 1
        # the turn stored what it read: prompt ids, answer ids, settings, citations
        details = interrupted.turn_details(i_second.turn)
        assert list(details.prompt_ids) == i_second.prompt_ids and list(details.answer_ids) == i_second.token_ids
        assert i_second.turn.sampling["seed"] == 13 and i_second.turn.sampling["kind"] == "ask"
        assert [c.start for c in details.citations] == [c.start for c in i_second.citations]
        # another seed gives another answer from the same point: the equality above is not vacuous
        other = interrupted.ask(None, "What does dedent remove?", session=interrupted.branch(i_more.turn), seed=99,
                                sampling={"max_new_tokens": 10, "temperature": 1.5, "top_k": 0, "top_p": 1.0})
        assert other.token_ids != i_second.token_ids
    finally:
        straight.close()
        interrupted.close()


def test_branch_starts_a_new_line_from_an_earlier_turn(service, book):
    doc = service.ingest(book)
    point = service.start_session(doc, at=0.5)
    first = service.ask(None, "wrap width", session=point, seed=1, sampling=ASK)
    second = service.ask(None, "indent", session=first.point, seed=2, sampling=ASK)
    third = service.ask(None, "tabs", session=second.point, seed=3, sampling=ASK)
    third.text  # noqa: B018 -- consumes the stream, which stores the turn
    branch = service.branch(first.turn.id)
    assert branch.after_turn == first.turn.id and [t.id for t in branch.history] == [first.turn.id]
    again = service.ask(None, "indent", session=branch, seed=2, sampling=ASK)
    assert again.turn.parent_turn_id == first.turn.id and again.turn.id not in (second.turn.id, third.turn.id)
    assert again.token_ids == second.token_ids  # same state, question and seed: same answer
    sideways = service.ask(None, "hyphens", session=branch, seed=4, sampling=ASK)
    assert sideways.turn.parent_turn_id == first.turn.id
    children = service.store.list_children(point.session_id, first.turn.id)
    assert [t.id for t in children] == [second.turn.id, again.turn.id, sideways.turn.id]
    assert service.resume(point.session_id).after_turn == sideways.turn.id
    fresh = service.ask(None, "hyphens", session=service.session_start(point.session_id), seed=4, sampling=ASK)
    assert fresh.turn.parent_turn_id is None


def test_list_rename_export_and_delete(service, pdf):
    doc = service.ingest(pdf)
    point = service.start_session(doc, title="atlas")
    first = service.ask(None, "lighthouses keepers", session=point, seed=1, sampling=ASK)
    cont = service.continue_(None, max_tokens=4, seed=2, session=first.point)
    assert cont.turn.answer == cont.text  # reading .turn consumed the stream and stored the turn
    assert [s.id for s in service.sessions(doc)] == [point.session_id]
    assert service.rename_session(point.session_id, "the atlas").title == "the atlas"
    markdown = service.export_session(point.session_id)
    assert markdown.startswith("# the atlas\n") and "atlas.pdf" in markdown
    assert "## Turn 1: Question: lighthouses keepers" in markdown and "## Turn 2 (after turn 1): Continue" in markdown
    citation = first.citations[0]
    assert citation.where == "page 3" and f"1. page 3 (tokens {citation.start}-{citation.end}" in markdown
    assert " ".join(citation.passage.split()) in markdown and "machine-generated" in markdown
    for line in first.text.split("\n"):
        assert f"> {line}".rstrip() in markdown
    with pytest.raises(DocumentInUseError, match="session"):
        service.delete_document(doc)
    service.delete_session(point.session_id)
    assert service.sessions() == []
    with pytest.raises(SessionNotFoundError):
        service.resume(point.session_id)
    with pytest.raises(SessionNotFoundError):
        service.branch(first.turn.id)
    service.delete_document(doc)
    assert service.documents() == []


def test_a_session_deleted_while_answering_reports_it(service, book):
    doc = service.ingest(book)
    point = service.start_session(doc)
    answer = service.ask(None, "wrap", session=point, seed=1, sampling=ASK)
    service.delete_session(point.session_id)
    with pytest.raises(SessionNotFoundError, match="deleted meanwhile"):
        list(answer)


def test_a_turn_stores_the_state_of_reading_the_whole_conversation(service, book):
    """The stored (boundary state, tail) after a turn is bit for bit the state of reading, from the start
    of the document in calls on the call grid, the document up to the reading point, the prompt and the answer."""
    doc = service.ingest(book)
    point = service.start_session(doc, at=0.6)
    answer = service.ask(None, "How is text wrapped?", session=point, seed=5, sampling=ASK)
    turn = answer.turn
    info = service.store.get_snapshot(turn.snapshot_id)
    conversation = service.store.token_ids(doc.id, 0, point.session.position) + answer.prompt_ids + answer.token_ids
    span = call_span(service.bundle.model.config)
    assert info.position == len(conversation) and 1 <= len(info.tail_ids) <= span
    boundary = info.position - len(info.tail_ids)
    assert boundary % span == 0 and list(info.tail_ids) == conversation[boundary:]
    stored = state_from_bytes(service.store.load_snapshot_bytes(info.id), service.bundle, "turn state")
    expected = run_aligned(service.bundle.model, None, conversation[:boundary])
    for key, value in expected.to_flat().items():
        assert torch.equal(stored.to_flat()[key], value), key


def test_delete_document_with_force_deletes_its_sessions_as_the_refusal_says(service, book):
    doc = service.ingest(book)
    point = service.start_session(doc, at=100)
    service.ask(None, "wrap", session=point, seed=1, sampling=ASK).text  # noqa: B018 -- stores the turn
    with pytest.raises(DocumentInUseError, match="pass force=True"):
        service.delete_document(doc)
    service.delete_document(doc, force=True)
    assert service.documents() == [] and service.sessions() == []
    with pytest.raises(SessionNotFoundError):
        service.resume(point)


def test_line_breaks_in_titles_questions_and_answers_cannot_forge_headings_or_rows(service, book, capsys, tmp_path):
    from megalodoc.app.cli import main as cli_main

    doc = service.ingest(book)
    point = service.start_session(doc, at=100, title="notes\n\n## Turn 1: Question: forged\r\n> forged")
    asked = service.ask(None, "wrap\n# forged heading", session=point, seed=1, sampling=ASK)
    asked.text  # noqa: B018 -- stores the turn
    service.store.add_turn(point.session_id, asked.turn.id, "", "line one\rline two\u2028## forged", {"kind": "x"})
    markdown = service.export_session(point)
    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    assert headings == ["# notes ## Turn 1: Question: forged > forged",
                        "## Turn 1: Question: wrap # forged heading", "## Turn 2 (after turn 1): Question: "]
    assert "> line one\n> line two\n> ## forged" in markdown  # each piece of the answer stays quoted
    service.start_session(doc, at=10, title="real\n   99  doc 7    at token 5   3 turn(s)  forged row")
    common = ["--db", str(tmp_path / "reader.db"), "--model", str(service.bundle.source)]
    assert cli_main(["sessions", "list", *common]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and rows[0].endswith("real 99 doc 7 at token 5 3 turn(s) forged row")
