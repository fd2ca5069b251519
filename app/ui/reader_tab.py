"""The Reader tab: components and their events. Logic lives in `reader_handlers.py`; gr.State keeps
only ids (the session and the turn the next one follows)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from megalodoc.app.ui import reader_handlers as h
from megalodoc.app.ui.context import AppContext
from megalodoc.app.ui.guard import QUIET, guarded_by, quiet_on
from megalodoc.app.ui.picks import PagePicks, repeated
from megalodoc.app.ui.settings_handlers import sampling_settings
from megalodoc.app.ui.settings_tab import SettingsTab

PROGRESS = gr.Progress()  # Gradio fills in a per-request tracker for a parameter with this default
INTRO = """Pick a document and a reading point, then ask. The evidence (passages of the document before
the reading point, with their page or file:line) comes first; the generated text below it comes from
a small model and may be wrong. Every question is kept in a session you can resume or branch later."""


def build_reader_tab(ctx: AppContext, settings: SettingsTab) -> gr.Dropdown:
    """Builds the tab; returns its document picker (refreshed when the tab is selected)."""
    guarded = guarded_by(ctx.gate)  # the server waits for these handlers' work when it stops
    gr.Markdown(INTRO)
    # Pickers accept any value: their choices change per page (documents read, sessions started since the
    # page was built) and every handler checks the id it gets against the store.
    session_id = gr.State(None)
    after_turn = gr.State(None)
    # what the pickers' dependent lists show, one per page (see picks.py: a pick of these again is a repeat)
    picks = gr.State(PagePicks())
    with gr.Row():
        document = gr.Dropdown(label="Document", choices=h.readable_choices(ctx), value=None, scale=3,
                               allow_custom_value=True)
        refresh = gr.Button("Refresh list", scale=0)
    with gr.Row():
        position = gr.Slider(0, 1, 0, step=1, label="Reading point (token)", scale=3)
        where = gr.Textbox(label="Go to page / file:line / %", placeholder="p. 3, src/app.py:40, 50%", scale=1)
        go = gr.Button("Go", scale=0)
    point_info = gr.Markdown()
    with gr.Row():
        question = gr.Textbox(label="Question", placeholder="What does the document say about ...?", scale=4)
        whole = gr.Checkbox(False, label="Search past the reading point", scale=1)
    with gr.Row():
        ask = gr.Button("Ask", variant="primary")
        cont = gr.Button("Continue the text")
        new = gr.Button("New conversation")
    status = gr.Markdown()
    evidence = gr.Markdown(label="Evidence")
    chat = gr.Chatbot(label="Conversation (answers are generated text)", height=360)
    plot = gr.Plot(label="Along the document: reading point, evidence, surprise")
    with gr.Row():
        surprise = gr.Button("Compute surprise (bits per byte along the document)", size="sm", scale=0)
    with gr.Accordion("Sessions of this document", open=True):
        with gr.Row():
            sessions = gr.Dropdown(label="Session", choices=[], scale=3, allow_custom_value=True)
            resume = gr.Button("Resume", scale=0)
            delete = gr.Button("Delete", variant="stop", scale=0)
        with gr.Row():
            turns = gr.Dropdown(label="Turn to branch from", choices=[], scale=3, allow_custom_value=True)
            branch = gr.Button("Branch from this turn", scale=0)
        with gr.Row():
            title = gr.Textbox(label="New title", scale=3)
            rename = gr.Button("Rename", scale=0)
            export = gr.Button("Export Markdown", scale=0)
        exported = gr.File(label="Exported session (Markdown)", interactive=False, visible=False)

    sampling_inputs = settings.inputs()
    view_outputs = [evidence, chat, session_id, after_turn, status, plot, sessions, turns]

    def picked(doc_id: int | None, page: PagePicks) -> tuple[Any, ...]:
        with page.lock:
            if repeated(doc_id, page.document):
                # the reading point, conversation and session picked stay; the document may have grown
                length = h.document_length(ctx, doc_id) if doc_id is not None else 0
                return (gr.update(maximum=max(1, length)), *[gr.skip()] * 4,
                        gr.update(choices=h.session_choices(ctx, doc_id) if doc_id is not None else []), gr.skip(),
                        gr.skip())
            if doc_id is None:
                page.document, page.session = None, None
                return gr.update(maximum=1, value=0), "", None, None, None, gr.update(choices=[], value=None), [], ""
            length = h.document_length(ctx, doc_id)
            shown_now = (gr.update(maximum=max(1, length), value=length), h.describe_point(ctx, doc_id, length), None,
                         None, h.reading_plot(ctx, doc_id, length),
                         gr.update(choices=h.session_choices(ctx, doc_id), value=None), [], "")
            page.document, page.session = doc_id, None
            return shown_now

    def session_picked(sid: int | None, page: PagePicks) -> Any:
        with page.lock:
            choices = h.turn_choices(ctx, sid)
            if repeated(sid, page.session):  # leaves the turn picked as it is
                return gr.update(choices=choices)
            page.session = sid
            return gr.update(choices=choices, value=None)

    def moved(doc_id: int | None, at: float) -> tuple[Any, ...]:
        if doc_id is None:
            return "", gr.skip()
        return h.describe_point(ctx, doc_id, int(at)), h.reading_plot(ctx, doc_id, int(at))

    def went(doc_id: int | None, text: str) -> tuple[Any, ...]:
        at = h.position_of(ctx, doc_id, text)
        return at, h.describe_point(ctx, doc_id, at), h.reading_plot(ctx, doc_id, at)

    def streamed(views: Iterator[h.ReaderView], doc_id: int, at: int, page: PagePicks) -> Iterator[tuple[Any, ...]]:
        for number, view in enumerate(views):
            plot_now = h.reading_plot(ctx, doc_id, at, view.citations) if number == 0 else gr.skip()
            if not view.done:
                yield (view.evidence, view.chat, view.session_id, view.after_turn, view.status, plot_now, gr.skip(),
                       gr.skip())
                continue
            page.listed(doc_id, view.session_id)
            yield (view.evidence, view.chat, view.session_id, view.after_turn, view.status, plot_now,
                   gr.update(choices=h.session_choices(ctx, doc_id), value=view.session_id),
                   gr.update(choices=h.turn_choices(ctx, view.session_id), value=view.after_turn))

    def asked(doc_id, text, at, whole_doc, *rest):
        *knobs, sid, turn, page = rest
        sampling = sampling_settings(*knobs)
        yield from streamed(h.ask(ctx, doc_id, text, int(at), whole_doc, sampling, sid, turn), doc_id, int(at), page)

    def continued(doc_id, at, *rest):
        *knobs, sid, turn, page = rest
        sampling = sampling_settings(*knobs)
        yield from streamed(h.continue_text(ctx, doc_id, int(at), sampling, sid, turn), doc_id, int(at), page)

    def shown(result: tuple[h.ReaderView, int, int], page: PagePicks) -> tuple[Any, ...]:
        view, doc_id, at = result
        page.listed(doc_id, view.session_id)
        return (gr.update(choices=h.readable_choices(ctx), value=doc_id), gr.update(maximum=max(
            1, h.document_length(ctx, doc_id)), value=at), h.describe_point(ctx, doc_id, at), view.evidence,
            view.chat, view.session_id, view.after_turn, view.status, h.reading_plot(ctx, doc_id, at, view.citations),
            gr.update(choices=h.session_choices(ctx, doc_id), value=view.session_id),
            gr.update(choices=h.turn_choices(ctx, view.session_id), value=view.after_turn))

    def removed(doc_id: int | None, sid: int | None, current: int | None, page: PagePicks) -> tuple[Any, ...]:
        said = h.delete_session(ctx, sid)
        cleared = current is not None and int(current) == int(sid)
        with page.lock:
            page.session = None
        return (said, gr.update(choices=h.session_choices(ctx, doc_id), value=None), gr.update(choices=[], value=None),
                None if cleared else current, gr.skip() if not cleared else None, gr.skip() if not cleared else [])

    def surprised(doc_id: int | None, at: float, progress: gr.Progress = PROGRESS) -> tuple[Any, ...]:
        def report(done: int, total: int) -> None:
            progress(done / max(1, total), desc="Reading the document again for its surprise curve")

        said = h.compute_surprise(ctx, doc_id, report)
        return said, h.reading_plot(ctx, doc_id, int(at))

    restore_outputs = [document, position, point_info, *view_outputs]
    picked_outputs = [position, point_info, session_id, after_turn, plot, sessions, chat, evidence]
    document.input(guarded(picked), [document, picks], picked_outputs, api_name="pick_document", **quiet_on(point_info))
    position.release(guarded(moved), [document, position], [point_info, plot], api_visibility="private", **QUIET)
    go.click(guarded(went), [document, where], [position, point_info, plot], api_name="go_to", **QUIET)
    where.submit(guarded(went), [document, where], [position, point_info, plot], api_visibility="private", **QUIET)
    ask_inputs = [document, question, position, whole, *sampling_inputs, session_id, after_turn, picks]
    ask.click(guarded(asked), ask_inputs, view_outputs, api_name="ask", show_progress_on=[status])
    question.submit(guarded(asked), ask_inputs, view_outputs, api_visibility="private", show_progress_on=[status])
    cont.click(guarded(continued), [document, position, *sampling_inputs, session_id, after_turn, picks], view_outputs,
               api_name="continue", show_progress_on=[status])
    new.click(lambda: (None, None, [], "", "A new conversation starts with the next question."), None,
              [session_id, after_turn, chat, evidence, status], api_name="new_conversation", **quiet_on(status))
    refresh.click(guarded(lambda: gr.update(choices=h.readable_choices(ctx))), None, [document],
                  api_name="readable_documents", **QUIET)
    sessions.input(guarded(session_picked), [sessions, picks], [turns], api_name="pick_session",
                   api_visibility="undocumented", **QUIET)
    resume.click(guarded(lambda sid, page: shown(h.resume_session(ctx, sid), page)), [sessions, picks],
                 restore_outputs, api_name="resume_session", **quiet_on(status))
    branch.click(guarded(lambda turn, page: shown(h.branch_session(ctx, turn), page)), [turns, picks],
                 restore_outputs, api_name="branch", **quiet_on(status))
    rename.click(guarded(lambda doc_id, sid, text: (h.rename_session(ctx, sid, text),
                                                    gr.update(choices=h.session_choices(ctx, doc_id), value=sid))),
                 [document, sessions, title], [status, sessions], api_name="rename_session", **QUIET)
    delete.click(guarded(removed), [document, sessions, session_id, picks], [status, sessions, turns, session_id,
                                                                             after_turn, chat],
                 api_name="delete_session", **quiet_on(status))
    surprise.click(guarded(surprised), [document, position], [status, plot], api_name="surprise",
                   show_progress_on=[status])
    export.click(guarded(lambda sid: gr.update(value=str(h.export_session(ctx, sid)), visible=True)), [sessions],
                 [exported],
                 api_name="export_session", **QUIET)
    return document
