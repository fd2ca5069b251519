"""Handlers of the Reader tab: pick a document and a reading point, ask and continue (streamed, evidence
first), and the document's sessions (resume, branch, rename, delete, export). Plain functions of an
AppContext; the page keeps only ids (document, session, turn) between calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from megalodoc.app.reader import MACHINE_LABEL, Citation, SessionNotFoundError, SessionPoint
from megalodoc.app.reader.sessions import one_line
from megalodoc.app.ui.context import AppContext
from megalodoc.app.ui.errors import UiError
from megalodoc.app.ui.formatting import table_name
from megalodoc.app.ui.picked import picked_id
from megalodoc.app.ui.plot import document_plot
from megalodoc.storage import TurnRecord

PASSAGE_CHARS = 700  # a quoted passage longer than this is cut (the export keeps it whole)
STREAM_EVERY = 0.1  # seconds between page updates while text streams in
GENERATED = f"_Generated text ({MACHINE_LABEL})._"
Message = dict[str, str]


@dataclass(frozen=True)
class ReaderView:
    """What the Reader tab shows after an action: the evidence, the conversation of the current line of
    the session, and the ids to keep (session, and the turn the next one follows)."""

    evidence: str
    chat: list[Message]
    session_id: int | None
    after_turn: int | None
    status: str = ""
    citations: tuple[Citation, ...] = field(default=())
    done: bool = True  # False while the answer is still streaming


# ------------------------------------------------------------------ documents and reading points

def readable_choices(ctx: AppContext) -> list[tuple[str, int]]:
    """Documents with something read, newest first, as (label, id) for the picker."""
    return [(f"{table_name(d.name)} (id {d.id})", d.id) for d in reversed(ctx.service.documents())
            if d.committed_position > 0]


def _doc_id(doc_id: int | str | None) -> int:
    return picked_id(doc_id, "choose a document first (read one in the Library tab)", "documents")


def document_length(ctx: AppContext, doc_id: int | str | None) -> int:
    """Tokens read of the document: the largest reading point."""
    return ctx.service.document(_doc_id(doc_id)).committed_position


def describe_point(ctx: AppContext, doc_id: int | str | None, position: int) -> str:
    """ "Reading point: token 1,234 of 5,000 (page 3)"."""
    doc = ctx.service.document(_doc_id(doc_id))
    where = ctx.service.where(doc, int(position))
    suffix = f" ({where})" if where else ""
    return f"Reading point: token {int(position):,} of {doc.committed_position:,}{suffix}"


def position_of(ctx: AppContext, doc_id: int | str | None, text: str) -> int:
    """The token position a page ("p. 3"), a file line ("src/a.py:40"), a fraction or a token stands for."""
    if not text or not text.strip():
        raise UiError("type a page (p. 3), a file line (src/app.py:40), a percentage (25%) or a token position")
    return ctx.service.resolve_position(_doc_id(doc_id), text)


def stored_surprise(ctx: AppContext, doc_id: int | str | None) -> list[tuple[int, int, float]]:
    """The document's surprise curve as stored for the loaded model, as (start, end, bits per byte) per
    chunk ([] when not computed yet); never computes it (that reads the whole document again)."""
    points = ctx.service.surprise(_doc_id(doc_id), stored_only=True)
    return [(p.start, p.end, p.bits_per_byte) for p in points]


def compute_surprise(ctx: AppContext, doc_id: int | str | None,
                     on_progress: Callable[[int, int], None] | None = None) -> str:
    """Compute and store the surprise curve (bits per byte per chunk) of the document; returns a summary
    naming the most surprising chunk, where garbled extraction or unusual text shows first."""
    points = ctx.service.surprise(_doc_id(doc_id), on_progress=on_progress)
    if not points:
        return "Nothing read yet: no surprise curve."
    worst = max(points, key=lambda p: p.bits_per_byte)
    mean = sum(p.bits_per_byte for p in points) / len(points)
    where = f" ({worst.location})" if worst.location else ""
    return (f"Surprise computed for {len(points):,} chunks: mean {mean:.2f} bits/byte; the most surprising chunk "
            f"starts at token {worst.position:,}{where} with {worst.bits_per_byte:.2f} bits/byte.")


def reading_plot(ctx: AppContext, doc_id: int | str | None, position: int,
                 citations: Sequence[Citation] = ()) -> Figure:
    """The plot along the document: reading point, evidence, and the stored surprise curve."""
    doc = ctx.service.document(_doc_id(doc_id))
    return document_plot(doc.name, doc.committed_position, int(position),
                         [(c.start, c.end) for c in citations], stored_surprise(ctx, doc.id))


# ------------------------------------------------------------------ evidence and conversation

def evidence_markdown(citations: Sequence[Citation], whole_document: bool = False) -> str:
    """The evidence passages, best first, each with its location and the quoted text."""
    if not citations:
        where = "the document" if whole_document else "the document before the reading point"
        return f"**Evidence:** no passage of {where} matches the question."
    lines = ["### Evidence from the document"]
    for number, c in enumerate(citations, 1):
        passage = " ".join(c.passage.split())
        if len(passage) > PASSAGE_CHARS:
            passage = passage[:PASSAGE_CHARS].rsplit(" ", 1)[0] + " …"
        lines += ["", f"**{number}. {c.where}** · tokens {c.start:,}-{c.end:,} · score {c.score:.3f}", "",
                  f"> {passage}"]
    return "\n".join(lines)


def _answer_message(text: str, streaming: bool = False) -> Message:
    body = text if text else ("…" if streaming else "(no text)")
    return {"role": "assistant", "content": f"{GENERATED}\n\n{body}" + (" ▌" if streaming and text else "")}


def _prompt_message(kind: str, prompt: str) -> Message:
    return {"role": "user", "content": prompt if kind == "ask" else "(continue the text)"}


def conversation(ctx: AppContext, point: SessionPoint) -> list[Message]:
    """The messages of the session's line up to `point`."""
    messages: list[Message] = []
    for turn in point.history:
        kind = str(turn.sampling.get("kind", "ask"))
        messages += [_prompt_message(kind, turn.prompt), _answer_message(turn.answer)]
    return messages


def _point(ctx: AppContext, doc_id: int, position: int, session_id: int | None,
           after_turn: int | None) -> tuple[SessionPoint, bool]:
    """Where the next turn goes, and whether its session is new: the page's session when it reads this
    document from this reading point, otherwise a new session there."""
    service = ctx.service
    if session_id is not None:
        try:
            session = service.session(session_id)
            if session.document_id == doc_id and session.position == position:
                if after_turn is not None:
                    return service.branch(after_turn), False
                return service.session_start(session_id), False
        except SessionNotFoundError as exc:  # deleted meanwhile, in this page or another
            raise UiError(f"{exc}: the conversation this page shows is gone; press \"New conversation\" "
                          "to start another here, or resume one from the list") from exc
    return service.start_session(doc_id, at=int(position)), True


def _start_turn(ctx: AppContext, doc_id: int, position: int, session_id: int | None, after_turn: int | None,
                start: Callable[[SessionPoint], Any]) -> tuple[SessionPoint, Any]:
    """(point, start(point)); a session made for this turn is deleted again when `start` refuses (bad
    settings, a question that cannot be asked), so a refusal leaves no empty session behind."""
    point, new = _point(ctx, doc_id, position, session_id, after_turn)
    try:
        return point, start(point)
    except BaseException:
        if new:
            ctx.service.delete_session(point)
        raise


def _stream(ctx: AppContext, point: SessionPoint, answer: Any, kind: str, prompt: str,
            evidence: str) -> Iterator[ReaderView]:
    history = conversation(ctx, point) + [_prompt_message(kind, prompt)]
    citations = tuple(answer.citations)
    yield ReaderView(evidence, history + [_answer_message("", streaming=True)], point.session_id, point.after_turn,
                     "Generating…", citations, done=False)
    text, shown = "", time.monotonic()
    for piece in answer:
        text += piece
        if time.monotonic() - shown >= STREAM_EVERY:
            shown = time.monotonic()
            yield ReaderView(evidence, history + [_answer_message(text, streaming=True)], point.session_id,
                             point.after_turn, "Generating…", citations, done=False)
    turn = answer.turn
    number = _turn_number(ctx, point.session_id, turn.id)
    yield ReaderView(evidence, history + [_answer_message(answer.text)], point.session_id, turn.id,
                     f"Session {point.session_id}, turn {number} stored: resume or branch it any time.", citations)


def ask(ctx: AppContext, doc_id: int | str | None, question: str, position: int, whole_document: bool,
        sampling: dict[str, Any], session_id: int | None, after_turn: int | None) -> Iterator[ReaderView]:
    """Ask about the document at the reading point, in the page's session (a new one when there is none):
    first the evidence with citations, then the generated answer as it streams."""
    if not question or not question.strip():
        raise UiError("the question is empty: type a question first")
    doc = _doc_id(doc_id)
    point, answer = _start_turn(ctx, doc, int(position), session_id, after_turn, lambda at: ctx.service.ask(
        None, question, whole_document=bool(whole_document), sampling=sampling, session=at))
    yield from _stream(ctx, point, answer, "ask", question.strip(),
                       evidence_markdown(answer.citations, bool(whole_document)))


def continue_text(ctx: AppContext, doc_id: int | str | None, position: int, sampling: dict[str, Any],
                  session_id: int | None, after_turn: int | None) -> Iterator[ReaderView]:
    """Continue the text from the reading point (or the session's last turn), streamed."""
    point, answer = _start_turn(ctx, _doc_id(doc_id), int(position), session_id, after_turn,
                                lambda at: ctx.service.continue_(None, sampling=sampling, session=at))
    yield from _stream(ctx, point, answer, "continue", "", "**Evidence:** none (continuing the text).")


# ------------------------------------------------------------------ sessions

def session_choices(ctx: AppContext, doc_id: int | str | None) -> list[tuple[str, int]]:
    """The document's sessions, most recently active first, as (label, id)."""
    if doc_id is None or doc_id == "":
        return []
    choices = []
    for s in ctx.service.sessions(_doc_id(doc_id)):
        turns = len(ctx.service.turns(s.id))
        title = one_line(s.title or "") or f"Session {s.id}"
        choices.append((f"{title} · token {s.position:,} · {turns} turn{'s' if turns != 1 else ''} · "
                        f"{s.updated_at:%Y-%m-%d %H:%M}", s.id))
    return choices


def _turn_numbers(turns: Sequence[TurnRecord]) -> dict[int, int]:
    """Turn id -> its number in the session, 1 for the oldest, over all branches (turn ids count over the
    whole library)."""
    return {turn.id: number for number, turn in enumerate(turns, 1)}


def _turn_number(ctx: AppContext, session_id: int, turn_id: int) -> int:
    """The turn's number in its session, as turn_choices labels it."""
    return _turn_numbers(ctx.service.turns(session_id))[turn_id]


def turn_choices(ctx: AppContext, session_id: int | None) -> list[tuple[str, int]]:
    """Every turn of the session (all branches), oldest first, as (label, id): the points to branch from."""
    if session_id is None:
        return []
    turns = ctx.service.turns(int(session_id))
    numbers = _turn_numbers(turns)
    choices = []
    for turn in turns:
        prompt = turn.prompt or "(continue)"
        after = "" if turn.parent_turn_id is None else f" (after {numbers.get(turn.parent_turn_id, '?')})"
        choices.append((f"{numbers[turn.id]}{after}: {prompt[:60]}", turn.id))
    return choices


def _chosen_session(session_id: int | str | None) -> int:
    return picked_id(session_id, "choose a session first", "sessions")


def _view_of(ctx: AppContext, point: SessionPoint, status: str) -> ReaderView:
    citations: tuple[Citation, ...] = ()
    if point.after_turn is not None:
        citations = tuple(ctx.service.turn_details(point.after_turn).citations)
    evidence = evidence_markdown(citations) if citations else ""
    return ReaderView(evidence, conversation(ctx, point), point.session_id, point.after_turn, status, citations)


def resume_session(ctx: AppContext, session_id: int | str | None) -> tuple[ReaderView, int, int]:
    """The session after its latest turn: (view, document id, reading point). The next Ask continues it
    exactly as if it had never stopped."""
    point = ctx.service.resume(_chosen_session(session_id))
    title = one_line(point.session.title or "") or f"session {point.session_id}"
    view = _view_of(ctx, point, f"Resumed {title} after {len(point.history)} turn(s).")
    return view, point.document.id, point.session.position


def branch_session(ctx: AppContext, turn_id: int | str | None) -> tuple[ReaderView, int, int]:
    """The session after an earlier turn: the next Ask starts a new line beside what followed it."""
    turn = picked_id(turn_id, "choose the turn to branch from", "turns")
    point = ctx.service.branch(turn)
    number = _turn_number(ctx, point.session_id, turn)
    view = _view_of(ctx, point, f"Branching session {point.session_id} after turn {number}: the next question "
                                "starts a new line.")
    return view, point.document.id, point.session.position


def rename_session(ctx: AppContext, session_id: int | str | None, title: str) -> str:
    record = ctx.service.rename_session(_chosen_session(session_id), title.strip() or None)
    return f"Session {record.id} is now called {one_line(record.title or '') or f'Session {record.id}'}."


def delete_session(ctx: AppContext, session_id: int | str | None) -> str:
    sid = _chosen_session(session_id)
    ctx.service.delete_session(sid)
    return f"Deleted session {sid}."


def export_session(ctx: AppContext, session_id: int | str | None) -> Path:
    """Write the session as Markdown into DATA_DIR/exports; returns the file."""
    sid = _chosen_session(session_id)
    text = ctx.service.export_session(sid)
    folder = ctx.data_dir / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"megalodoc-session-{sid}.md"
    path.write_text(text, encoding="utf-8")
    return path
