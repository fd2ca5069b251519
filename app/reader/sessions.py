"""Session values of the reader service, and the Markdown export of a session.

A session is a tree of turns that starts at a reading point of a document. A `SessionPoint` says where
the next turn goes: after `after_turn` (None: the first turn). `resume` gives the point after the
session's latest turn, `branch` the point after any earlier turn, which makes the next turn a sibling
of the turns that already follow it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from megalodoc.app.reader.answer import MACHINE_LABEL, Citation
from megalodoc.storage import DocumentRecord, SessionRecord, TurnRecord


@dataclass(frozen=True)
class SessionPoint:
    """Where the next turn of `session` goes: after turn `after_turn` (None: the session's start).
    `history` holds the turns from the first one down to `after_turn`, in order."""

    session: SessionRecord
    document: DocumentRecord
    after_turn: int | None
    history: tuple[TurnRecord, ...]

    @property
    def session_id(self) -> int:
        return self.session.id


@dataclass(frozen=True)
class TurnDetails:
    """A stored turn with what its snapshot metadata keeps: kind ("ask" or "continue"), the reading point,
    the prompt and answer token ids, and the citations shown with it."""

    turn: TurnRecord
    kind: str
    position: int
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    citations: tuple[Citation, ...]

    @classmethod
    def from_metadata(cls, turn: TurnRecord, metadata: dict[str, Any]) -> TurnDetails:
        return cls(turn, str(metadata.get("kind", "ask")), int(metadata.get("position", 0)),
                   tuple(metadata.get("prompt_ids", ())), tuple(metadata.get("answer_ids", ())),
                   tuple(Citation.from_dict(c) for c in metadata.get("citations", ())))


def one_line(text: str) -> str:
    """`text` with every run of whitespace, line breaks included, as one space: a title or a question
    shown in a heading or a listing row cannot start a heading or a row of its own."""
    return " ".join(text.split())


def session_markdown(session: SessionRecord, document: DocumentRecord, where: str,
                     turns: list[TurnDetails]) -> str:
    """The whole session (every branch) as Markdown: per turn the question (or "continue"), the answer
    labelled as machine-generated, and its citations with the quoted passages."""
    title = one_line(session.title or "") or f"Session {session.id}"
    reading_point = f"token {session.position}" + (f" ({where})" if where else "")
    lines = [f"# {title}", "", f"Document: **{one_line(document.name)}** (id {document.id}), reading point: "
             f"{reading_point}",
             f"Started: {session.created_at:%Y-%m-%d %H:%M} UTC", "", f"> Answers are {MACHINE_LABEL}.", ""]
    numbers = {details.turn.id: index for index, details in enumerate(turns, 1)}
    for index, details in enumerate(turns, 1):
        turn = details.turn
        parent = turn.parent_turn_id
        after = "" if parent is None else f" (after turn {numbers.get(parent, parent)})"
        heading = f"Question: {one_line(turn.prompt)}" if details.kind == "ask" else "Continue the text"
        lines += [f"## Turn {index}{after}: {heading}", ""]
        lines += ["Answer (machine-generated):", ""]
        # every kind of line break ends a quoted line: a lone \r would end it in a Markdown reader too
        lines += [f"> {line}" if line else ">" for line in (turn.answer or "(empty)").splitlines()]
        lines.append("")
        if details.citations:
            lines += ["Citations:", ""]
            for n, c in enumerate(details.citations, 1):
                quoted = " ".join(c.passage.split())
                lines.append(f"{n}. {c.where} (tokens {c.start}-{c.end}, score {c.score:.3f}): \"{quoted}\"")
            lines.append("")
        settings = ", ".join(f"{k}={v}" for k, v in sorted(turn.sampling.items()))
        lines += [f"<sub>settings: {settings}</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"
