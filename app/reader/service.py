"""The reader service: one loaded model and one store, spoken to in documents, positions, sessions and
turns. The CLI, the web UI and the Python API (`megalodoc.Library`) all call these methods.

    service = ReaderService("sqlite:///library.db")          # model: a folder, Hub id, or None (default)
    doc = service.ingest("book.pdf")
    answer = service.ask(doc, "How are tags encoded?", at="p. 40")
    answer.citations                                          # evidence first
    for piece in answer: ...                                  # then the streamed, machine-generated text
    point = service.start_session(doc, at="p. 40")
    first = service.ask(None, "What is DER?", session=point); first.text
    point = service.resume(point.session_id)                  # later, even in another process
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from typing import Any

from megalodoc.app.reader.answer import Answer, Citation, TextStream
from megalodoc.app.reader.cursor import Cursor, cursor_payload, document_cursor, fold, stored_cursor
from megalodoc.app.reader.errors import (
    AmbiguousDocumentError,
    DocumentInUseError,
    DocumentNotFoundError,
    DocumentNotReadyError,
    EmptyQuestionError,
    ForeignModelError,
    QuestionError,
    ReaderError,
    SessionNotFoundError,
    StoredStateError,
)
from megalodoc.app.reader.evidence import rank_evidence
from megalodoc.app.reader.positions import Position, resolve_position
from megalodoc.app.reader.prompting import PromptFormat, load_prompt_format
from megalodoc.app.reader.sessions import SessionPoint, TurnDetails, session_markdown
from megalodoc.app.reader.surprise import SurprisePoint, chunk_losses, surprise_points
from megalodoc.ingest.library import Library, restore_state
from megalodoc.ingest.pipeline import CancelToken, ProgressCallback
from megalodoc.model import (
    Generation,
    IncompatibleStateError,
    Megalodon,
    ModelBundle,
    ModelState,
    SamplingSettings,
)
from megalodoc.model.bundle import IN_MEMORY
from megalodoc.model.tokenizer import check_encodable
from megalodoc.storage import DocumentInUseError as StoreDocumentInUseError
from megalodoc.storage import (
    DocumentRecord,
    DocumentStatus,
    NotFoundError,
    SessionRecord,
    SnapshotInfo,
    StorageError,
    TurnRecord,
)

logger = logging.getLogger(__name__)

DocumentRef = DocumentRecord | int | str
Sampling = SamplingSettings | Mapping[str, Any] | None

# Defaults per kind of generation. A small base model drifts quickly: answers stay short and a little
# below temperature 1; continuations may run longer.
ASK_SAMPLING: dict[str, Any] = {"max_new_tokens": 96, "temperature": 0.7, "top_k": 40, "top_p": 0.9, "greedy": False}
CONTINUE_SAMPLING: dict[str, Any] = {"max_new_tokens": 128, "temperature": 0.8, "top_k": 0, "top_p": 0.95,
                                     "greedy": False}


class ReaderService(Library):
    """Ingest (inherited from `megalodoc.ingest.library.Library`), documents, positions, ask, continue,
    sessions and surprise over one model and one store. Methods are safe to call from several threads;
    the model is shared read-only."""

    def __init__(self, db: str | os.PathLike | None = None,
                 model: ModelBundle | str | os.PathLike | Megalodon | None = None,
                 **library_options: Any) -> None:
        """db: SQLAlchemy URL or SQLite file (None: $MEGALODOC_DB, else ./megalodoc.db); model: a loaded
        ModelBundle, or what `load_bundle` takes (a folder, a Hub repo id, None for the shipped model);
        library_options: the ingest options of `Library` (snapshot_every=, caps=). The prompt format
        comes from the model folder's config.json ("prompt_format")."""
        super().__init__(db, model, **library_options)
        source = self.bundle.source
        self.prompt_format: PromptFormat = load_prompt_format(None if source == IN_MEMORY else source)
        self.tokenizer = self.bundle.require_tokenizer()

    # ------------------------------------------------------------------ documents

    def document(self, doc: DocumentRef) -> DocumentRecord:
        """The stored document for a record (re-read, so a deleted one is noticed), an id, or a name (an
        id given as a string works too). DocumentNotFoundError / AmbiguousDocumentError otherwise."""
        if isinstance(doc, DocumentRecord):
            found = self.store.get_document_or_none(doc.id)
            if found is None or not _same_document(found, doc):
                raise DocumentNotFoundError(
                    f"{_name(doc)} is not in this store: it was deleted (its id may now name another document) "
                    "or the record comes from another store"
                )
            return found
        if isinstance(doc, str) and doc.strip().isdigit():
            doc = int(doc.strip())
        if isinstance(doc, int) and not isinstance(doc, bool):
            found = self.store.get_document_or_none(doc)
            if found is None:
                raise DocumentNotFoundError(f"no document with id {doc} (it may have been deleted)")
            return found
        if not isinstance(doc, str):
            raise TypeError(f"a document is a DocumentRecord, an id or a name, got {type(doc).__name__}")
        matches = [d for d in self.store.list_documents() if d.name == doc]
        if not matches:
            raise DocumentNotFoundError(f"no document named {doc!r}")
        if len(matches) > 1:
            ids = ", ".join(str(d.id) for d in matches)
            raise AmbiguousDocumentError(f"{len(matches)} documents are named {doc!r} (ids {ids}); give an id")
        return matches[0]

    def delete_document(self, doc: DocumentRef, *, force: bool = False) -> None:
        """Delete a document with its snapshots, text and locations. Refused with DocumentInUseError (the
        message says why) while sessions use it or an ingest holds it, unless `force`, which deletes its
        sessions and their turns with it."""
        document = self.document(doc)
        try:
            self.store.delete_document(document.id, force=force)
        except StoreDocumentInUseError as exc:
            raise DocumentInUseError(str(exc)) from exc
        except NotFoundError as exc:
            raise DocumentNotFoundError(f"{_name(document)}: deleted meanwhile") from exc

    def snapshots(self, doc: DocumentRef) -> list[SnapshotInfo]:
        """The document's stored snapshots, by position (a record, an id or a name, as `document` takes)."""
        return self.store.list_snapshots(self.document(doc).id)

    def state_at(self, doc: DocumentRef, position: Position) -> ModelState:
        """The model state after `position` of a document (anything `resolve_position` takes: a token
        position, "p. 40", "25%", ...), as `Library.state_at` restores it. DocumentNotFoundError,
        PositionError, ForeignModelError (read by another model) or StoredStateError otherwise."""
        document = self._readable(doc)
        where = resolve_position(self.store, document, position)
        try:
            return restore_state(self.store, self.bundle, document, where)
        except IncompatibleStateError as exc:
            raise StoredStateError(str(exc)) from exc

    def resolve_position(self, doc: DocumentRef, at: Position = None) -> int:
        """The token position `at` stands for: an int token position, a page ("p. 132", its first
        token), "path:line" (the line's first token), a fraction 0..1 or "25%" of what was read, or None
        for the end of what was read. PositionError naming the document on bad input."""
        return resolve_position(self.store, self.document(doc), at)

    def where(self, doc: DocumentRef, position: int) -> str:
        """Display form of the location of the token at `position` ("page 3", "src/a.py:10-40") or ""."""
        document = self.document(doc)
        location = self.store.locate(document.id, max(0, min(position, document.committed_position - 1)))
        return "" if location is None else location.display

    def _readable(self, doc: DocumentRef) -> DocumentRecord:
        document = self.document(doc)
        if document.model_fingerprint != self.bundle.fingerprint:
            raise ForeignModelError(
                f"{_name(document)} was read by another model (fingerprint {document.model_fingerprint[:12]}), "
                f"not the loaded one ({self.bundle.fingerprint[:12]}); ingest it again with this model"
            )
        if document.committed_position == 0:
            raise DocumentNotReadyError(f"{_name(document)}: nothing of it has been read yet ({document.status})")
        return document

    # ------------------------------------------------------------------ evidence

    def evidence(self, doc: DocumentRef, question: str, at: Position = None, *, whole_document: bool = False,
                 limit: int = 5) -> list[Citation]:
        """The best passages for `question`, best first: chunks that end at or before the reading point
        `at` (the whole document when `whole_document`), ranked by `evidence.rank_evidence` with its
        default method."""
        document = self._readable(doc)
        question = _check_question(document, question)
        position = resolve_position(self.store, document, at)
        return self._evidence(document, question, position, whole_document, limit)

    def _evidence(self, document: DocumentRecord, question: str, position: int, whole_document: bool,
                  limit: int) -> list[Citation]:
        hits = rank_evidence(self.store, self.bundle, document.id, question,
                             before=None if whole_document else position, k=limit)
        return [Citation.from_hit(document, hit) for hit in hits]

    # ------------------------------------------------------------------ ask / continue

    def ask(self, doc: DocumentRef | None, question: str, at: Position = None, *, whole_document: bool = False,
            sampling: Sampling = None, seed: int | None = None, session: SessionPoint | None = None) -> Answer:
        """Answer `question` about a document at reading point `at` (default: the end of what was read).

        Returns an Answer at once with `citations`: the best passages that end before `at` (no spoilers;
        `whole_document` searches everything). Iterating the Answer streams the generated text: the
        state at `at` is restored, the best passages (PromptFormat.max_passages) and the question are
        read in the model folder's prompt format, and the answer is sampled (`sampling` overrides the
        ASK_SAMPLING defaults; `seed` fixes the sampling; without one a seed is drawn and recorded).

        In a session (`session`: a SessionPoint from start_session / resume / branch / a previous
        answer's `.point`), `doc` must be None or the session's document, `at` must be None, and the
        answer continues the session's state; when the stream ends the turn is stored (prompt and answer
        ids, settings, citations, the state after it) and `answer.turn` / `answer.point` are set."""
        document, position, cursor_of = self._start(doc, at, session)
        question = _check_question(document, question)
        citations = tuple(self._evidence(document, question, position, whole_document, limit=5))
        passages = [(c.where, c.passage) for c in citations[: self.prompt_format.max_passages]]
        prompt_ids = self.tokenizer.encode(self.prompt_format.render(passages, question))
        settings = self._sampling(ASK_SAMPLING, sampling, seed, None)
        return self._answer("ask", document, position, question, citations, prompt_ids, settings, cursor_of,
                            session)

    def continue_(self, doc: DocumentRef | None, at: Position = None, max_tokens: int | None = None,
                  sampling: Sampling = None, *, seed: int | None = None,
                  session: SessionPoint | None = None) -> Answer:
        """Continue the text of a document from reading point `at` (default: the end of what was read), or
        a session from its point. Returns an Answer without citations whose iteration streams the text;
        `max_tokens` (or sampling["max_new_tokens"]) bounds it, CONTINUE_SAMPLING gives the defaults.
        In a session the turn is stored when the stream ends, as for `ask`."""
        document, position, cursor_of = self._start(doc, at, session)
        settings = self._sampling(CONTINUE_SAMPLING, sampling, seed, max_tokens)
        at_start = position == 0 and (session is None or session.after_turn is None)
        prompt_ids = [_bos(self.bundle.model)] if at_start else []  # nothing read yet: begin a sequence
        return self._answer("continue", document, position, None, (), prompt_ids, settings, cursor_of, session)

    def _start(self, doc: DocumentRef | None, at: Position,
               session: SessionPoint | None) -> tuple[DocumentRecord, int, Callable[[], Cursor]]:
        """(document, reading point, a function giving the cursor to start from)."""
        if session is None:
            if doc is None:
                raise TypeError("give a document (or a session)")
            document = self._readable(doc)
            position = resolve_position(self.store, document, at)
            return document, position, lambda: self._document_cursor(document, position)
        if at is not None:
            raise ValueError("a session has its own reading point: pass at=None inside a session")
        self.session(session)  # still this store's session, not a deleted one whose id was reused
        document = self._readable(session.document if doc is None else doc)
        if document.id != session.document.id:
            raise ValueError(f"session {session.session_id} reads document {session.document.id}, not {document.id}")
        return document, session.session.position, lambda: self._point_cursor(session, document)

    def _sampling(self, defaults: dict[str, Any], sampling: Sampling, seed: int | None,
                  max_tokens: int | None) -> dict[str, Any]:
        values = dict(defaults)
        if isinstance(sampling, SamplingSettings):
            values.update({k: v for k, v in asdict(sampling).items() if k != "stop_tokens"})
        elif sampling is not None:
            unknown = set(sampling) - {"max_new_tokens", "temperature", "top_k", "top_p", "greedy", "seed"}
            if unknown:
                raise ValueError(f"unknown sampling settings {sorted(unknown)}")
            values.update(sampling)
        if max_tokens is not None:
            values["max_new_tokens"] = max_tokens
        if seed is not None:
            values["seed"] = seed
        if values.get("seed") is None:
            values["seed"] = secrets.randbelow(2**31)  # recorded, so the answer can be reproduced
        SamplingSettings(**values)  # checks every value now, before any work
        return values

    def _answer(self, kind: str, document: DocumentRecord, position: int, question: str | None,
                citations: tuple[Citation, ...], prompt_ids: list[int], settings: dict[str, Any],
                cursor_of: Callable[[], Cursor], session: SessionPoint | None) -> Answer:
        bundle = self.bundle
        eos = bundle.model.config.eos_id
        sampling = SamplingSettings(**settings, stop_tokens=() if eos is None else (eos,))
        state: dict[str, Cursor] = {}

        def tokens() -> Iterator[int]:
            cursor = cursor_of()
            state["cursor"] = cursor
            ids = list(cursor.tail) + list(prompt_ids)  # never empty: a cursor past 0 keeps a tail token
            generation = Generation(bundle, ids, state=cursor.boundary, settings=sampling)
            try:
                yield from generation
            finally:  # a stop string ends the text early: stop the model too
                generation.close()

        def finish(answer: Answer) -> None:
            if session is not None:
                self._store_turn(session, document, answer, state["cursor"])

        stream = TextStream(tokens(), self.tokenizer, self.prompt_format if kind == "ask" else _NO_STOP)
        return Answer(kind=kind, document=document, position=position, question=question, citations=citations,
                      settings=settings, prompt_ids=prompt_ids, stream=stream, finish=finish)

    def _document_cursor(self, document: DocumentRecord, position: int) -> Cursor:
        try:
            return document_cursor(self.store, self.bundle, document, position)
        except IncompatibleStateError as exc:
            raise StoredStateError(str(exc)) from exc
        except StorageError as exc:
            if self.store.get_document_or_none(document.id) is None:
                raise DocumentNotFoundError(f"{_name(document)}: deleted meanwhile") from exc
            raise

    # ------------------------------------------------------------------ ingest and surprise

    def ingest(self, path: str | os.PathLike, on_progress: ProgressCallback | None = None,
               cancel: CancelToken | None = None, *, surprise: bool = False) -> DocumentRecord:
        """Read one document (or resume it) as `Library.ingest` does; with `surprise`, a completed
        document's surprise curve is computed and stored right after."""
        document = super().ingest(path, on_progress, cancel)
        if surprise and document.status == DocumentStatus.COMPLETE:
            self.surprise(document)
        return document

    def surprise(self, doc: DocumentRef, *, recompute: bool = False, stored_only: bool = False,
                 on_progress: Callable[[int, int], None] | None = None) -> list[SurprisePoint]:
        """Per-chunk loss along the document: a list of (position, bits_per_byte, location) triples (with
        `.start` / `.end`, the chunk's token range), one per chunk of what was read, by position.
        Computed once per document and model and stored; computed again when the document grew since,
        or with `recompute`. `stored_only` never computes: it returns what is stored (maybe []), cheap
        enough for every redraw of a plot. `on_progress(tokens_done, tokens_total)` while computing."""
        document = self._readable(doc)
        fingerprint = self.bundle.fingerprint
        losses = [] if recompute else self.store.chunk_losses(document.id, fingerprint)
        stale = not losses or losses[-1].end != document.committed_position
        if stale and not stored_only:
            try:
                losses = chunk_losses(self.store, self.bundle, document, on_progress)
                self.store.put_chunk_losses(document.id, fingerprint, losses)
            except StorageError as exc:
                if self.store.get_document_or_none(document.id) is None:
                    raise DocumentNotFoundError(f"{_name(document)}: deleted meanwhile") from exc
                raise
        locations = self.store.locations_between(document.id, 0, document.committed_position)
        return surprise_points(losses, locations)

    # ------------------------------------------------------------------ sessions

    def start_session(self, doc: DocumentRef, at: Position = None, title: str | None = None) -> SessionPoint:
        """A new session at reading point `at` of the document (default: the end of what was read);
        returns the point before its first turn."""
        document = self._readable(doc)
        position = resolve_position(self.store, document, at)
        snapshot = self.store.latest_snapshot_at(document.id, position)
        try:
            record = self.store.create_session(document.id, position, None if snapshot is None else snapshot.id,
                                               title)
        except NotFoundError as exc:
            raise DocumentNotFoundError(f"{_name(document)}: deleted meanwhile") from exc
        return SessionPoint(record, document, None, ())

    def sessions(self, doc: DocumentRef | None = None) -> list[SessionRecord]:
        """Sessions of a document (or all), most recently active first."""
        document_id = None if doc is None else self.document(doc).id
        return self.store.list_sessions(document_id)

    def session(self, session: SessionRecord | SessionPoint | int) -> SessionRecord:
        """The stored session (SessionNotFoundError when there is none)."""
        session_id = _session_id(session)
        try:
            found = self.store.get_session(session_id)
        except NotFoundError as exc:
            raise SessionNotFoundError(f"no session with id {session_id} (it may have been deleted)") from exc
        given = session.session if isinstance(session, SessionPoint) else session
        if isinstance(given, SessionRecord) and not _same_session(found, given):
            raise SessionNotFoundError(
                f"session {session_id} is not in this store: it was deleted (its id may now name another session) "
                "or the record comes from another store"
            )
        return found

    def turns(self, session: SessionRecord | SessionPoint | int) -> list[TurnRecord]:
        """Every turn of the session (all branches), oldest first."""
        return self.store.list_turns(self.session(session).id)

    def turn_details(self, turn: TurnRecord | int) -> TurnDetails:
        """A turn with its kind, reading point, prompt and answer ids and citations."""
        record = self._turn(turn)
        metadata = self.store.get_snapshot(record.snapshot_id).metadata if record.snapshot_id is not None else {}
        return TurnDetails.from_metadata(record, metadata)

    def resume(self, session: SessionRecord | SessionPoint | int) -> SessionPoint:
        """The point after the session's most recent turn (its start when it has none): the next ask or
        continue there gives exactly what it would have given had the session never stopped."""
        record = self.session(session)
        turns = self.store.list_turns(record.id)
        if not turns:
            return SessionPoint(record, self.document(record.document_id), None, ())
        return self._point_after(record, turns[-1].id)

    def branch(self, turn: TurnRecord | int) -> SessionPoint:
        """The point after an earlier turn: the next turn there starts a new line beside the turns that
        already follow it."""
        record = self._turn(turn)
        return self._point_after(self.session(record.session_id), record.id)

    def session_start(self, session: SessionRecord | SessionPoint | int) -> SessionPoint:
        """The point before the session's first turn (a new first turn is a branch from the start)."""
        record = self.session(session)
        return SessionPoint(record, self.document(record.document_id), None, ())

    def rename_session(self, session: SessionRecord | SessionPoint | int, title: str | None) -> SessionRecord:
        """Set (or clear, with None) the session's title."""
        session_id = self.session(session).id  # a record must still be this store's session
        try:
            return self.store.rename_session(session_id, title)
        except NotFoundError as exc:
            raise SessionNotFoundError(f"no session with id {session_id}") from exc

    def delete_session(self, session: SessionRecord | SessionPoint | int) -> None:
        """Delete the session and its turns (and their stored states)."""
        session_id = self.session(session).id  # a record must still be this store's session
        try:
            self.store.delete_session(session_id)
        except NotFoundError as exc:
            raise SessionNotFoundError(f"no session with id {session_id}") from exc

    def export_session(self, session: SessionRecord | SessionPoint | int) -> str:
        """The session as Markdown: every turn (all branches) with its answer and its citations."""
        record = self.session(session)
        document = self.document(record.document_id)
        details = [self.turn_details(turn) for turn in self.store.list_turns(record.id)]
        return session_markdown(record, document, self.where(document, record.position), details)

    def _turn(self, turn: TurnRecord | int) -> TurnRecord:
        turn_id = turn.id if isinstance(turn, TurnRecord) else turn
        try:
            found = self.store.get_turn(turn_id)
        except NotFoundError as exc:
            raise SessionNotFoundError(f"no turn with id {turn_id} (its session may have been deleted)") from exc
        if isinstance(turn, TurnRecord) and (found.session_id, found.created_at) != (turn.session_id, turn.created_at):
            raise SessionNotFoundError(
                f"turn {turn_id} is not in this store: its session was deleted (its id may now name another turn) "
                "or the record comes from another store"
            )
        return found

    def _point_after(self, record: SessionRecord, turn_id: int) -> SessionPoint:
        history = tuple(self.store.turn_path(turn_id))
        return SessionPoint(record, self.document(record.document_id), turn_id, history)

    def _point_cursor(self, point: SessionPoint, document: DocumentRecord) -> Cursor:
        if point.after_turn is None:
            return self._document_cursor(document, point.session.position)
        last = point.history[-1] if point.history and point.history[-1].id == point.after_turn else point.after_turn
        turn = self._turn(last)
        if turn.session_id != point.session_id:
            raise SessionNotFoundError(f"turn {turn.id} belongs to session {turn.session_id}, not {point.session_id}")
        if turn.snapshot_id is None:
            raise StoredStateError(f"turn {turn.id} of session {turn.session_id} has no stored state")
        what = f"state of turn {turn.id} (session {turn.session_id}, {_name(document)})"
        try:
            return stored_cursor(self.store, self.bundle, turn.snapshot_id, what)
        except IncompatibleStateError as exc:
            raise StoredStateError(str(exc)) from exc

    def _store_turn(self, point: SessionPoint, document: DocumentRecord, answer: Answer, cursor: Cursor) -> None:
        after = fold(self.bundle, cursor, [*answer.prompt_ids, *answer.token_ids])
        metadata = {"kind": answer.kind, "position": answer.position, "prompt_ids": list(answer.prompt_ids),
                    "answer_ids": answer.token_ids, "citations": [c.to_dict() for c in answer.citations]}
        try:
            turn = self.store.add_turn(point.session_id, point.after_turn, answer.question or "", answer.text,
                                       {"kind": answer.kind, **answer.settings},
                                       state=cursor_payload(self.bundle, after, metadata))
        except NotFoundError as exc:
            raise SessionNotFoundError(
                f"session {point.session_id} on {_name(document)} was deleted meanwhile; the answer was not stored"
            ) from exc
        answer.record_turn(turn, SessionPoint(point.session, document, turn.id, (*point.history, turn)))


_NO_STOP = PromptFormat(stop=())


def _name(document: DocumentRecord) -> str:
    return f"{document.name} (id {document.id})"


def _same_document(stored: DocumentRecord, given: DocumentRecord) -> bool:
    """Whether a record read now is the document `given` was read from: ids are reused after a delete
    (SQLite) and repeat across stores, so the content, model and creation time must match too."""
    return (stored.content_hash, stored.model_fingerprint, stored.created_at) == (
        given.content_hash, given.model_fingerprint, given.created_at)


def _same_session(stored: SessionRecord, given: SessionRecord) -> bool:
    """Whether a session read now is the one `given` was read from (see _same_document)."""
    return (stored.document_id, stored.position, stored.created_at) == (
        given.document_id, given.position, given.created_at)


def _check_question(document: DocumentRecord, question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise EmptyQuestionError(f"{_name(document)}: the question is empty")
    check_encodable(question, f"{_name(document)}: the question")  # before the search and the model
    if "\x00" in question:  # the turn could not be stored (PostgreSQL text holds no NUL): refused first
        raise QuestionError(f"{_name(document)}: the question contains a NUL character (U+0000) at character "
                            f"{question.index(chr(0)) + 1}")
    return question.strip()


def _session_id(session: SessionRecord | SessionPoint | int) -> int:
    if isinstance(session, SessionPoint):
        return session.session_id
    return session.id if isinstance(session, SessionRecord) else int(session)


def _bos(model: Megalodon) -> int:
    bos = model.config.bos_id
    if bos is None:
        raise ReaderError("the model has no BOS id: it cannot start a text from nothing (position 0)")
    return bos
