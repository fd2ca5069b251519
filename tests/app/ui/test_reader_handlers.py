"""The Reader tab's handlers called directly: ask with evidence first, continue, sessions that resume
exactly and branch, export, and the plot, on a real PDF read by a tiny model into a real SQLite store."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from megalodoc.app.reader import DocumentNotFoundError, ForeignModelError, ReaderService, SessionNotFoundError
from megalodoc.app.ui import library_handlers as lib
from megalodoc.app.ui import reader_handlers as h
from megalodoc.app.ui.errors import UiError, expected_errors
from megalodoc.app.ui.reader_handlers import GENERATED
from megalodoc.app.ui.settings_handlers import sampling_settings
from megalodoc.model import Megalodon, MegalodonConfig, save_model

SAMPLING = sampling_settings(12, 0.8, 0, 1.0, False, 3)  # short answers, a fixed seed


@pytest.fixture
def atlas(ctx, atlas_pdf):
    job = lib.start_upload(ctx, [str(atlas_pdf)])
    assert ctx.jobs.wait(job, 120)
    [task] = ctx.jobs.tasks(job)
    return ctx.service.document(task.document_id)


def last(views):
    views = list(views)
    return views[0], views[-1], views


def test_ask_shows_evidence_first_then_the_labelled_generated_answer(ctx, atlas):
    first, final, views = last(h.ask(ctx, atlas.id, "Who are the keepers of lighthouses?", atlas.committed_position,
                                     False, SAMPLING, None, None))
    # the first view already holds the evidence, before any text was generated
    assert first.evidence.startswith("### Evidence from the document") and "**1. page 3**" in first.evidence
    assert "lighthouses and keepers" in first.evidence and first.citations[0].page == 3
    assert first.chat[-1]["content"] == f"{GENERATED}\n\n…"
    assert final.chat[0] == {"role": "user", "content": "Who are the keepers of lighthouses?"}
    answer = final.chat[1]["content"]
    assert answer.startswith(GENERATED) and "machine-generated" in answer and len(answer) > len(GENERATED) + 2
    assert final.session_id is not None and final.after_turn is not None and "stored" in final.status
    [turn] = ctx.service.turns(final.session_id)
    assert turn.id == final.after_turn and answer.endswith(turn.answer)


def test_resumed_session_gives_the_identical_next_answer(ctx, atlas):
    at = atlas.committed_position
    questions = ["What is on page 2?", "And the lighthouses?"]
    # an uninterrupted session: two questions
    *_, one = h.ask(ctx, atlas.id, questions[0], at, False, SAMPLING, None, None)
    *_, two = h.ask(ctx, atlas.id, questions[1], at, False, SAMPLING, one.session_id, one.after_turn)
    # another session asks the first question, then the page is closed (all ids forgotten) ...
    *_, other = h.ask(ctx, atlas.id, questions[0], at, False, SAMPLING, None, None)
    assert other.session_id != one.session_id and other.chat == one.chat
    # ... and a new page resumes it from the list of sessions
    sessions = dict((sid, label) for label, sid in h.session_choices(ctx, atlas.id))
    assert set(sessions) == {one.session_id, other.session_id} and "1 turn" in sessions[other.session_id]
    view, doc_id, position = h.resume_session(ctx, other.session_id)
    assert (doc_id, position) == (atlas.id, at) and view.chat == other.chat and view.after_turn == other.after_turn
    assert "page" in view.evidence  # the last turn's evidence comes back too
    *_, resumed = h.ask(ctx, doc_id, questions[1], position, False, SAMPLING, view.session_id, view.after_turn)
    assert resumed.chat == two.chat  # the same next answer as the session that never stopped


def test_branch_starts_a_new_line_after_an_earlier_turn(ctx, atlas):
    at = atlas.committed_position
    *_, one = h.ask(ctx, atlas.id, "What grows in gardens?", at, False, SAMPLING, None, None)
    *_, two = h.ask(ctx, atlas.id, "And rivers?", at, False, SAMPLING, one.session_id, one.after_turn)
    view, _, _ = h.branch_session(ctx, one.after_turn)
    assert view.chat == one.chat and view.after_turn == one.after_turn
    *_, side = h.ask(ctx, atlas.id, "And bread?", at, False, SAMPLING, view.session_id, view.after_turn)
    assert side.session_id == one.session_id and side.chat[:2] == one.chat and side.chat[2]["content"] == "And bread?"
    labels = [label for label, _ in h.turn_choices(ctx, one.session_id)]
    assert labels == ["1: What grows in gardens?", "2 (after 1): And rivers?", "3 (after 1): And bread?"]
    assert ctx.service.turns(one.session_id)[-1].parent_turn_id == one.after_turn != two.after_turn
    assert "turn 1 stored" in one.status and "turn 3 stored" in side.status
    assert view.status.startswith(f"Branching session {one.session_id} after turn 1:")
    # a second session numbers its own turns from 1, as its branch list does (turn ids count library-wide)
    *_, other = h.ask(ctx, atlas.id, "What grows in gardens?", at, False, SAMPLING, None, None)
    assert other.session_id != one.session_id and other.after_turn > side.after_turn
    assert f"Session {other.session_id}, turn 1 stored" in other.status
    assert [label for label, _ in h.turn_choices(ctx, other.session_id)] == ["1: What grows in gardens?"]


def test_continue_streams_text_from_the_reading_point_in_a_session(ctx, atlas):
    at = ctx.service.resolve_position(atlas.id, "p. 2")
    first, final, _ = last(h.continue_text(ctx, atlas.id, at, SAMPLING, None, None))
    assert "none (continuing the text)" in first.evidence and final.chat[0]["content"] == "(continue the text)"
    assert final.chat[1]["content"].startswith(GENERATED)
    assert ctx.service.session(final.session_id).position == at


def test_export_rename_and_delete_a_session(ctx, atlas):
    *_, one = h.ask(ctx, atlas.id, "Who keeps the lighthouses?", atlas.committed_position, False, SAMPLING, None,
                    None)
    said = h.rename_session(ctx, one.session_id, "  Lighthouses  ")
    assert said == f"Session {one.session_id} is now called Lighthouses."
    path = h.export_session(ctx, one.session_id)
    assert path.parent == ctx.data_dir / "exports"
    text = path.read_text()
    assert text.startswith("# Lighthouses") and "Question: Who keeps the lighthouses?" in text and "page 3" in text
    with pytest.raises(expected_errors(), match="1 session"):
        lib.delete_document(ctx, atlas.id)
    assert h.delete_session(ctx, one.session_id) == f"Deleted session {one.session_id}."
    assert h.session_choices(ctx, atlas.id) == []
    with pytest.raises(SessionNotFoundError):
        h.resume_session(ctx, one.session_id)
    with pytest.raises(UiError, match="choose a session"):
        h.export_session(ctx, None)
    # a page still showing the deleted session says what to do, for a question and a continuation alike
    gone = (rf"no session with id {one.session_id} .*: the conversation this page shows is gone; "
            r"press \"New conversation\"")
    with pytest.raises(UiError, match=gone):
        list(h.ask(ctx, atlas.id, "And then?", atlas.committed_position, False, SAMPLING, one.session_id, None))
    with pytest.raises(UiError, match=gone):
        list(h.continue_text(ctx, atlas.id, atlas.committed_position, SAMPLING, one.session_id, None))


def test_reading_points_from_pages_and_the_plot(ctx, atlas):
    at = h.position_of(ctx, atlas.id, "p. 3")
    said = h.describe_point(ctx, atlas.id, at)
    assert said == f"Reading point: token {at:,} of {atlas.committed_position:,} (page 3)"
    assert h.position_of(ctx, atlas.id, "100%") == atlas.committed_position
    with pytest.raises(expected_errors(), match="no page 9"):
        h.position_of(ctx, atlas.id, "p. 9")
    first, *_ = h.ask(ctx, atlas.id, "lighthouses keepers", atlas.committed_position, False, SAMPLING, None, None)
    figure = h.reading_plot(ctx, atlas.id, at, first.citations)
    assert isinstance(figure, Figure)
    [axes] = figure.axes
    low, high = axes.get_xlim()
    assert low < 0 and atlas.committed_position < high < 1.02 * atlas.committed_position
    assert [line.get_xdata()[0] for line in axes.get_lines() if line.get_label() == "reading point"] == [at]
    spans = [p for p in axes.patches]
    assert len(spans) == len(first.citations) >= 1


def test_bad_requests_are_refused_with_the_reason(ctx, atlas, tiny_model_dir, tmp_path, long_text):
    with pytest.raises(UiError, match="the question is empty"):
        list(h.ask(ctx, atlas.id, "   ", 10, False, SAMPLING, None, None))
    with pytest.raises(UiError, match="choose a document"):
        list(h.ask(ctx, None, "why?", 10, False, SAMPLING, None, None))
    # the pickers take typed text too: a name there said "invalid literal for int() with base 10"
    for typed in ("atlas.pdf", "abc"):
        with pytest.raises(UiError, match=f"'{typed}' is not one of the listed documents: pick one"):
            list(h.ask(ctx, typed, "why?", 10, False, SAMPLING, None, None))
        with pytest.raises(UiError, match=f"'{typed}' is not one of the listed sessions"):
            h.resume_session(ctx, typed)
        with pytest.raises(UiError, match=f"'{typed}' is not one of the listed documents"):
            lib.delete_document(ctx, typed)
    assert h.document_length(ctx, str(atlas.id)) == atlas.committed_position  # typed digits are an id
    # settings refused only once the session was made left an empty session behind each time
    with pytest.raises(UiError, match=r"seed 100000000000000000000 must be a whole number below 2\*\*64"):
        sampling_settings(12, 0.8, 0, 1.0, False, 1e20)
    too_large = {**SAMPLING, "seed": 2**64}  # what the API could send past the settings tab
    for run in (lambda: list(h.ask(ctx, atlas.id, "why?", 10, False, too_large, None, None)),
                lambda: list(h.continue_text(ctx, atlas.id, 10, too_large, None, None))):
        with pytest.raises(ValueError, match=r"seed=18446744073709551616 must be a whole number in \[0, 2\*\*64\)"):
            run()
    assert ctx.service.sessions(atlas.id) == []
    # deleted in another tab
    lib.delete_document(ctx, atlas.id)
    with pytest.raises(DocumentNotFoundError, match=f"no document with id {atlas.id}"):
        list(h.ask(ctx, atlas.id, "why?", 10, False, SAMPLING, None, None))
    # a document read by another model (the tiny model with other weights) in the same library
    torch.manual_seed(1)
    config = MegalodonConfig.preset("tiny", vocab_size=ctx.service.bundle.model.config.vocab_size, chunk_size=16)
    other_dir = save_model(Megalodon(config), tmp_path / "other", tokenizer=tiny_model_dir / "tokenizer.model")
    with ReaderService(tmp_path / "library.db", other_dir) as other:
        foreign = other.ingest(long_text)
    with pytest.raises(ForeignModelError, match="read by another model"):
        list(h.ask(ctx, foreign.id, "why?", 10, False, SAMPLING, None, None))


def test_surprise_curve_on_request_and_after_reading(ctx, atlas, atlas_pdf, long_text):
    assert h.stored_surprise(ctx, atlas.id) == []  # never computed behind the person's back
    seen: list[tuple[int, int]] = []
    said = h.compute_surprise(ctx, atlas.id, lambda done, total: seen.append((done, total)))
    assert said.startswith(f"Surprise computed for {len(h.stored_surprise(ctx, atlas.id)):,} chunks: mean ")
    assert seen and seen[-1] == (atlas.committed_position, atlas.committed_position)
    curve = h.stored_surprise(ctx, atlas.id)
    assert curve[0][0] == 0 and curve[-1][1] == atlas.committed_position and all(b > 0 for _, _, b in curve)
    [axes] = h.reading_plot(ctx, atlas.id, 100).axes
    [line] = [line for line in axes.get_lines() if line.get_label() == "surprise (bits/byte)"]
    assert list(line.get_ydata()) == [b for _, _, b in curve]
    # asked for at upload: computed right after the document is read
    job = lib.start_upload(ctx, [str(long_text)], surprise=True)
    assert ctx.jobs.wait(job, 120)
    [task] = ctx.jobs.tasks(job)
    assert task.status == "complete" and h.stored_surprise(ctx, task.document_id)
