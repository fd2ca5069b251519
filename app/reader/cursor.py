"""A model state kept the way the store keeps it: the state at the last call boundary plus the token ids
read after it (the tail, at most one call span of CALL_CHUNKS * C tokens; see `megalodoc.model.boundary`).
A mid-chunk state also holds the chunk's keys and values; those are never stored: the tail is re-read on
restore, in calls cut on the same absolute grid as every other reading.

Every answer and continuation starts by reading its cursor's tail from the boundary state, and every
session turn ends by folding what it read into a new cursor. A session that resumes from the store
therefore runs exactly the computation of one that never stopped, and gives the same tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from megalodoc.model import STATE_SCHEMA_VERSION, ModelBundle, ModelState, state_from_bytes, state_to_bytes
from megalodoc.model.boundary import fold_to_boundary
from megalodoc.storage import DocumentRecord, StatePayload, Store


@dataclass(frozen=True)
class Cursor:
    """`boundary`: a state at a call boundary (a chunk boundary in stores of older releases); `tail`: token
    ids after it."""

    boundary: ModelState
    tail: tuple[int, ...]

    @property
    def position(self) -> int:
        """Tokens read in all: the boundary's position plus the tail."""
        return self.boundary.position + len(self.tail)


def fold(bundle: ModelBundle, cursor: Cursor, ids: Sequence[int]) -> Cursor:
    """The cursor after reading `ids` after `cursor`: the boundary moves to the last call boundary that
    leaves at least one token in the tail (a generation needs one token to read next-token logits from),
    so the tail holds 1 to one call span of tokens; the text in between is read in calls on the grid."""
    tokens = [*cursor.tail, *(int(i) for i in ids)]
    if not tokens:
        return cursor
    boundary, tail = fold_to_boundary(bundle.model, cursor.boundary, tokens[:-1])
    return Cursor(boundary, (*tail, tokens[-1]))


def initial_cursor(bundle: ModelBundle) -> Cursor:
    """The model's initial state with nothing read."""
    return Cursor(bundle.model.initial_state(1, device=bundle.device), ())


def document_cursor(store: Store, bundle: ModelBundle, document: DocumentRecord, position: int) -> Cursor:
    """The cursor after `position` tokens of a stored document: the latest document snapshot whose state
    lies strictly before `position` at a chunk boundary, with the stored ids from there folded in (the
    snapshots may lie several calls apart), so the tail holds 1 to one call span of tokens. Never modifies
    the stored snapshot."""
    C = bundle.chunk_size
    info = store.latest_snapshot_at(document.id, position - 1) if position > 0 else None
    while info is not None and info.state_position % C != 0:  # a mid-chunk state (older stores)
        info = store.latest_snapshot_at(document.id, info.position - 1) if info.position > 0 else None
    if info is None:
        start = initial_cursor(bundle)
    else:
        what = f"snapshot {info.id} of {document.name} at token {info.position}"
        state = state_from_bytes(store.load_snapshot_bytes(info.id), bundle, what)
        start = Cursor(state, ())
    if position == start.boundary.position:
        return start
    return fold(bundle, start, store.token_ids(document.id, start.boundary.position, position))


def cursor_payload(bundle: ModelBundle, cursor: Cursor, metadata: dict[str, object]) -> StatePayload:
    """The cursor as a turn snapshot to store: the boundary state's bytes and the tail ids."""
    data = state_to_bytes(cursor.boundary, bundle)
    return StatePayload(cursor.position, data, bundle.fingerprint, STATE_SCHEMA_VERSION, metadata,
                        tail_ids=cursor.tail)


def stored_cursor(store: Store, bundle: ModelBundle, snapshot_id: int, what: str) -> Cursor:
    """The cursor kept by a turn snapshot (see `cursor_payload`); `what` names it in errors."""
    info = store.get_snapshot(snapshot_id)
    state = state_from_bytes(store.load_snapshot_bytes(snapshot_id), bundle, what)
    return Cursor(state, tuple(info.tail_ids))
