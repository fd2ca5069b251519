"""Reading sessions and their turns. A session starts at (document, position); each turn keeps prompt,
answer, sampling settings and the state after it; a turn's parent makes the conversation a tree."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from megalodoc.storage.convert import (
    optional_text,
    require_int,
    session_record,
    storable_text,
    to_json,
    turn_record,
)
from megalodoc.storage.documents import load_document
from megalodoc.storage.errors import NotFoundError
from megalodoc.storage.models import SessionRow, SnapshotRow, TurnRow, utcnow
from megalodoc.storage.records import SessionRecord, StatePayload, TurnRecord
from megalodoc.storage.row_ids import get_row, guard_ids
from megalodoc.storage.snapshots import (
    check_fingerprint,
    check_state_args,
    insert_snapshot,
    new_snapshot_values,
    prepare_blob,
    put_blob,
)
from megalodoc.storage.unit import UnitOfWork


def _load_session(session: Session, session_id: int, *, key_share: bool = False) -> SessionRow:
    row = get_row(session, SessionRow, session_id, key_share=key_share)
    if row is None:
        raise NotFoundError(f"no session with id {session_id}")
    return row


def _load_turn(session: Session, turn_id: int, *, key_share: bool = False) -> TurnRow:
    row = get_row(session, TurnRow, turn_id, key_share=key_share)
    if row is None:
        raise NotFoundError(f"no turn with id {turn_id}")
    return row


def _check_snapshot_of(session: Session, snapshot_id: int, document_id: int) -> SnapshotRow:
    snapshot = get_row(session, SnapshotRow, snapshot_id)
    if snapshot is None:
        raise NotFoundError(f"no snapshot with id {snapshot_id}")
    if snapshot.document_id != document_id:
        raise ValueError(f"snapshot {snapshot_id} belongs to document {snapshot.document_id}, not {document_id}")
    return snapshot


class SessionsMixin:
    _uow: UnitOfWork
    state_encoding: str

    def create_session(
        self, document_id: int, position: int, snapshot_id: int | None = None, title: str | None = None
    ) -> SessionRecord:
        """Start a session at `position` of the document, optionally naming the document snapshot it
        resumes from (which must lie at or before `position`). `NotFoundError` when the document is not
        there, also when another process deletes it meanwhile."""
        require_int("position", position)
        optional_text("title", title)

        def work(session: Session) -> SessionRecord:
            document = load_document(session, document_id, key_share=True)  # a new session will reference it
            limit = max(document.committed_position, document.token_count or 0)
            if position > limit:
                raise ValueError(
                    f"position {position} lies beyond what document {document_id} has ({limit} tokens read)"
                )
            if snapshot_id is not None:
                snapshot = _check_snapshot_of(session, snapshot_id, document_id)
                if snapshot.kind != "document" or snapshot.position > position:
                    raise ValueError(
                        f"snapshot {snapshot_id} ({snapshot.kind} at {snapshot.position}) cannot start a "
                        f"session at position {position}"
                    )
            now = utcnow()
            row = SessionRow(
                document_id=document_id,
                position=position,
                snapshot_id=snapshot_id,
                title=title,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            return session_record(row)

        return self._uow.write(work)

    def get_session(self, session_id: int) -> SessionRecord:
        """The session; `NotFoundError` when there is none."""
        return self._uow.read(lambda s: session_record(_load_session(s, session_id)))

    def list_sessions(self, document_id: int | None = None) -> list[SessionRecord]:
        """Sessions (of one document, or all), most recently active first."""
        query = select(SessionRow).order_by(SessionRow.updated_at.desc(), SessionRow.id.desc())
        if document_id is not None:
            query = query.where(SessionRow.document_id == document_id)
        return self._uow.read(guard_ids(lambda s: [session_record(row) for row in s.scalars(query)], [], document_id))

    def rename_session(self, session_id: int, title: str | None) -> SessionRecord:
        """Set (or clear) the session's title."""
        optional_text("title", title)

        def work(session: Session) -> SessionRecord:
            row = _load_session(session, session_id)
            row.title = title
            row.updated_at = utcnow()
            session.flush()
            return session_record(row)

        return self._uow.write(work)

    def delete_session(self, session_id: int) -> None:
        """Delete the session, its turns, and the turn snapshots nothing else uses."""

        def work(session: Session) -> None:
            _load_session(session, session_id)
            snapshot_ids = list(
                session.scalars(
                    select(TurnRow.snapshot_id).where(
                        TurnRow.session_id == session_id, TurnRow.snapshot_id.is_not(None)
                    )
                )
            )
            session.execute(delete(TurnRow).where(TurnRow.session_id == session_id))
            session.execute(delete(SessionRow).where(SessionRow.id == session_id))
            for snapshot_id in set(snapshot_ids):
                used = session.scalar(
                    select(func.count()).select_from(TurnRow).where(TurnRow.snapshot_id == snapshot_id)
                ) or session.scalar(
                    select(func.count()).select_from(SessionRow).where(SessionRow.snapshot_id == snapshot_id)
                )
                if not used:
                    session.execute(
                        delete(SnapshotRow).where(SnapshotRow.id == snapshot_id, SnapshotRow.kind == "turn")
                    )

        self._uow.write(work)
        self.collect_garbage()  # type: ignore[attr-defined]

    # ------------------------------------------------------------ turns

    def add_turn(
        self,
        session_id: int,
        parent_turn_id: int | None,
        prompt: str,
        answer: str,
        sampling: dict[str, Any],
        snapshot_id: int | None = None,
        *,
        state: StatePayload | None = None,
    ) -> TurnRecord:
        """Record a turn after `parent_turn_id` (None: a first turn). The state after the turn is either an
        already stored snapshot (`snapshot_id`) or `state`, stored as a "turn" snapshot in the same
        transaction as the turn. A second child of the same parent is a branch. `NotFoundError` when the
        session or the parent turn is not there, also when another process deletes it meanwhile."""
        if not isinstance(prompt, str) or not isinstance(answer, str):
            raise TypeError("prompt and answer must be str")
        sampling_json = to_json("sampling settings", sampling)
        if snapshot_id is not None and state is not None:
            raise ValueError("give snapshot_id or state, not both")
        blob = None
        if state is not None:
            if not isinstance(state, StatePayload):
                raise TypeError(f"state must be a StatePayload, got {type(state).__name__}")
            check_state_args(state.position, state.state_bytes, state.model_fingerprint, state.schema_version)
            blob = prepare_blob(state.state_bytes, self.state_encoding)
            state_metadata = to_json("state metadata", state.metadata)

        def work(session: Session) -> TurnRecord:
            # held from deletion until the turn is stored: a delete meanwhile gives NotFoundError
            owner = _load_session(session, session_id, key_share=True)
            if parent_turn_id is not None:
                parent = _load_turn(session, parent_turn_id, key_share=True)
                if parent.session_id != session_id:
                    raise ValueError(f"turn {parent_turn_id} belongs to session {parent.session_id}, not {session_id}")
            turn_snapshot = snapshot_id
            if snapshot_id is not None:
                _check_snapshot_of(session, snapshot_id, owner.document_id)
            if state is not None and blob is not None:
                document = load_document(session, owner.document_id)
                check_fingerprint(document, state.model_fingerprint)
                put_blob(session, blob)
                values = new_snapshot_values(
                    owner.document_id,
                    "turn",
                    state.position,
                    blob,
                    state.model_fingerprint,
                    state.schema_version,
                    state_metadata,
                    state.tail_ids,
                )
                turn_snapshot = insert_snapshot(session, values)
            now = utcnow()
            row = TurnRow(
                session_id=session_id,
                parent_turn_id=parent_turn_id,
                prompt=storable_text(prompt),
                answer=storable_text(answer),
                sampling_json=sampling_json,
                snapshot_id=turn_snapshot,
                created_at=now,
            )
            session.add(row)
            session.execute(update(SessionRow).where(SessionRow.id == session_id).values(updated_at=now))
            session.flush()
            return turn_record(row)

        return self._uow.write(work)

    def get_turn(self, turn_id: int) -> TurnRecord:
        """The turn; `NotFoundError` when there is none."""
        return self._uow.read(lambda s: turn_record(_load_turn(s, turn_id)))

    def turn_path(self, turn_id: int) -> list[TurnRecord]:
        """The turns from the conversation's first turn down to `turn_id` (inclusive), in order."""
        ancestry = select(TurnRow.id, TurnRow.parent_turn_id).where(TurnRow.id == turn_id).cte(recursive=True)
        ancestry = ancestry.union_all(
            select(TurnRow.id, TurnRow.parent_turn_id).join(ancestry, TurnRow.id == ancestry.c.parent_turn_id)
        )

        def work(session: Session) -> list[TurnRecord]:
            ids = list(session.scalars(select(ancestry.c.id)))
            if not ids:
                return []
            rows = {row.id: row for row in session.scalars(select(TurnRow).where(TurnRow.id.in_(ids)))}
            path = []
            current: int | None = turn_id
            while current is not None:
                path.append(turn_record(rows[current]))
                current = rows[current].parent_turn_id
            return path[::-1]

        path = self._uow.read(guard_ids(work, [], turn_id))  # a turn's path holds at least the turn
        if not path:
            raise NotFoundError(f"no turn with id {turn_id}")
        return path

    def list_children(self, session_id: int, parent_turn_id: int | None = None) -> list[TurnRecord]:
        """Turns that follow `parent_turn_id` in the session (None: the first turns), oldest first. More
        than one child means the conversation branches there."""
        parent = (
            TurnRow.parent_turn_id.is_(None) if parent_turn_id is None else TurnRow.parent_turn_id == parent_turn_id
        )
        query = select(TurnRow).where(TurnRow.session_id == session_id, parent).order_by(TurnRow.id)
        return self._uow.read(
            guard_ids(lambda s: [turn_record(row) for row in s.scalars(query)], [], session_id, parent_turn_id))

    def list_turns(self, session_id: int) -> list[TurnRecord]:
        """Every turn of the session (the whole tree), oldest first."""
        query = select(TurnRow).where(TurnRow.session_id == session_id).order_by(TurnRow.id)
        return self._uow.read(guard_ids(lambda s: [turn_record(row) for row in s.scalars(query)], [], session_id))
