"""Plain frozen dataclasses that cross the storage boundary: nothing outside `storage/` sees an ORM row.

Outputs (`DocumentRecord`, `SnapshotInfo`, `LocationRecord`, `ChunkHit`, `SessionRecord`, `TurnRecord`)
are built by the store; inputs (`ChunkText`, `Location`, `StatePayload`) are built by callers and checked
here, so a bad value fails with a message that names it before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from megalodoc.storage.status import DocumentStatus

DOCUMENT_KINDS = ("pdf", "text", "repo")
DOCUMENT_STATUSES = tuple(s.value for s in DocumentStatus)
SNAPSHOT_KINDS = ("document", "turn")  # document: at a chunk boundary of the text; turn: after a session turn


def _check_range(what: str, start: int, end: int) -> None:
    if not (isinstance(start, int) and isinstance(end, int)):
        raise TypeError(f"{what}: token offsets must be ints, got start={start!r} end={end!r}")
    if start < 0 or end <= start:
        raise ValueError(f"{what}: need 0 <= start < end, got start={start} end={end}")


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ChunkText:
    """The text of token range [start, end) of a document, kept for citations and full-text search, and
    optionally its token ids (so a reader can re-read from a snapshot without the source file)."""

    start: int
    end: int
    text: str
    token_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_range("ChunkText", self.start, self.end)
        if not isinstance(self.text, str):
            raise TypeError(f"ChunkText [{self.start}, {self.end}): text must be str, got {type(self.text).__name__}")
        if self.token_ids is not None:
            ids = tuple(int(i) for i in self.token_ids)
            if len(ids) != self.end - self.start:
                raise ValueError(
                    f"ChunkText [{self.start}, {self.end}): {len(ids)} token ids for {self.end - self.start} tokens"
                )
            if ids and (min(ids) < 0 or max(ids) >= 2**31):
                raise ValueError(f"ChunkText [{self.start}, {self.end}): token ids must lie in [0, 2**31)")
            object.__setattr__(self, "token_ids", ids)


@dataclass(frozen=True)
class Location:
    """Where token range [start, end) of a stored document came from: a PDF page, a file's line range, or
    character offsets. Citations and `describe_locations` resolve token positions through these.

    Ingest builds one from each source piece's `Locator` (ingest/sources/types.py: the same source fields,
    without tokens) and the token range that piece got; nothing else makes them.

    Use the constructors `Location.page_range`, `Location.file_lines`, `Location.text_span`. Ranges of one
    document are expected not to overlap (a page, a file, a stretch of text each own their tokens).
    """

    start: int
    end: int
    page: int | None = None
    path: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None

    def __post_init__(self) -> None:
        _check_range("Location", self.start, self.end)
        if self.page is not None and self.page < 1:
            raise ValueError(f"Location [{self.start}, {self.end}): pages count from 1, got page={self.page}")
        if (self.line_start is None) != (self.line_end is None):
            raise ValueError(f"Location [{self.start}, {self.end}): give both line_start and line_end or neither")
        if self.line_start is not None:
            if self.path is None:
                raise ValueError(f"Location [{self.start}, {self.end}): a line range needs a file path")
            if self.line_start < 1 or self.line_end < self.line_start:
                raise ValueError(
                    f"Location {self.path}: need 1 <= line_start <= line_end, got {self.line_start}..{self.line_end}"
                )
        if (self.char_start is None) != (self.char_end is None):
            raise ValueError(f"Location [{self.start}, {self.end}): give both char_start and char_end or neither")
        if self.char_start is not None and not (0 <= self.char_start <= self.char_end):
            raise ValueError(
                f"Location [{self.start}, {self.end}): need 0 <= char_start <= char_end, "
                f"got {self.char_start}..{self.char_end}"
            )
        if self.page is None and self.path is None and self.char_start is None:
            raise ValueError(f"Location [{self.start}, {self.end}): give a page, a path or character offsets")

    @classmethod
    def page_range(cls, start: int, end: int, page: int) -> Location:
        """Tokens [start, end) came from PDF page `page` (1-based)."""
        return cls(start, end, page=page)

    @classmethod
    def file_lines(cls, start: int, end: int, path: str, line_start: int, line_end: int) -> Location:
        """Tokens [start, end) came from lines line_start..line_end (1-based, inclusive) of `path`."""
        return cls(start, end, path=path, line_start=line_start, line_end=line_end)

    @classmethod
    def text_span(cls, start: int, end: int, char_start: int, char_end: int) -> Location:
        """Tokens [start, end) came from characters [char_start, char_end) of a plain text."""
        return cls(start, end, char_start=char_start, char_end=char_end)


def check_tail_ids(position: int, tail_ids: Any) -> tuple[int, ...]:
    """`tail_ids` as a tuple of ints, checked: token ids in [0, 2**31), no more of them than `position`."""
    if isinstance(tail_ids, (str, bytes)) or not hasattr(tail_ids, "__iter__"):
        raise TypeError(f"tail_ids must be a sequence of token ids, got {type(tail_ids).__name__}")
    ids = tuple(int(i) for i in tail_ids)
    if ids and (min(ids) < 0 or max(ids) >= 2**31):
        raise ValueError("tail_ids: token ids must lie in [0, 2**31)")
    if isinstance(position, int) and len(ids) > position:
        raise ValueError(f"{len(ids)} tail ids after a state at position {position}: more than were read")
    return ids


@dataclass(frozen=True)
class ChunkLoss:
    """Bits per byte of the tokens of [start, end) of a document as one model predicts them (surprise)."""

    start: int
    end: int
    bits_per_byte: float

    def __post_init__(self) -> None:
        _check_range("ChunkLoss", self.start, self.end)


@dataclass(frozen=True)
class StatePayload:
    """A serialized state to store with a session turn. `state_bytes` is the state at the chunk boundary
    `position - len(tail_ids)`; the `tail_ids` (fewer than a chunk) are re-read on restore, so the pair
    stands for the state after `position` tokens (see `megalodoc.model.boundary.fold_to_boundary`)."""

    position: int
    state_bytes: bytes
    model_fingerprint: str
    schema_version: int
    metadata: dict[str, Any] | None = None
    tail_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tail_ids", check_tail_ids(self.position, self.tail_ids))


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True)
class DocumentRecord:
    """A stored document. `committed_position` is the position of its last document snapshot."""

    id: int
    content_hash: str
    name: str
    kind: str
    source_path: str | None
    status: DocumentStatus
    token_count: int | None
    committed_position: int
    tokenizer_fingerprint: str
    model_fingerprint: str
    error: str | None
    claimed_by: str | None
    lease_expires_at: float | None  # seconds since the epoch, database clock
    created_at: datetime
    updated_at: datetime

    @property
    def progress(self) -> float | None:
        """Fraction of the document read so far, or None while the token count is unknown."""
        if not self.token_count:
            return None
        return min(1.0, self.committed_position / self.token_count)


@dataclass(frozen=True)
class SnapshotInfo:
    """A stored snapshot without its bytes; `load_snapshot_bytes(id)` fetches and verifies them.

    The stored state is at `state_position` (a chunk boundary); the `tail_ids` after it, re-read on
    restore, bring it to `position`. Snapshots written before tails existed have none."""

    id: int
    document_id: int
    kind: str
    position: int
    blob_sha256: str
    size_bytes: int
    model_fingerprint: str
    schema_version: int
    metadata: dict[str, Any]
    created_at: datetime
    tail_ids: tuple[int, ...] = ()

    @property
    def state_position(self) -> int:
        """Tokens read by the stored state itself: `position` minus the tail."""
        return self.position - len(self.tail_ids)


@dataclass(frozen=True)
class LocationRecord:
    """A stored location. `display` gives e.g. "page 132", "src/app.py:40-88" or "chars 100-2000"."""

    id: int
    document_id: int
    start: int
    end: int
    page: int | None
    path: str | None
    line_start: int | None
    line_end: int | None
    char_start: int | None
    char_end: int | None

    @property
    def kind(self) -> str:
        """ "page", "file" or "text"."""
        if self.page is not None:
            return "page"
        return "file" if self.path is not None else "text"

    @property
    def display(self) -> str:
        """Short human form of the location."""
        if self.page is not None:
            return f"page {self.page}"
        if self.path is not None:
            if self.line_start is None:
                return self.path
            if self.line_start == self.line_end:
                return f"{self.path}:{self.line_start}"
            return f"{self.path}:{self.line_start}-{self.line_end}"
        return f"chars {self.char_start}-{self.char_end}"


def describe_locations(locations: list[LocationRecord]) -> str:
    """One display string for a run of locations: "pages 131-132", "src/a.py:40-88, src/b.py:1-9"."""
    if not locations:
        return ""
    pages = [loc.page for loc in locations if loc.page is not None]
    if len(pages) == len(locations):
        low, high = min(pages), max(pages)
        return f"page {low}" if low == high else f"pages {low}-{high}"
    parts: list[str] = []
    for loc in locations:
        if not parts or parts[-1] != loc.display:
            parts.append(loc.display)
    return ", ".join(parts)


@dataclass(frozen=True)
class ChunkRecord:
    """Stored text of token range [start, end) of a document."""

    id: int
    document_id: int
    start: int
    end: int
    text: str
    has_token_ids: bool


@dataclass(frozen=True)
class ChunkHit:
    """A full-text search hit: the chunk, its score (higher is better), a snippet and its locations."""

    chunk_id: int
    document_id: int
    start: int
    end: int
    text: str
    score: float
    snippet: str
    locations: tuple[LocationRecord, ...] = field(default=())

    @property
    def where(self) -> str:
        """Display string of the hit's locations, e.g. "page 132"."""
        return describe_locations(list(self.locations))


@dataclass(frozen=True)
class SessionRecord:
    """A reading session started at `position` of a document (optionally from a stored snapshot)."""

    id: int
    document_id: int
    position: int
    snapshot_id: int | None
    title: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TurnRecord:
    """One prompt/answer exchange; `parent_turn_id` None marks a first turn. Turns form a tree (branches)."""

    id: int
    session_id: int
    parent_turn_id: int | None
    prompt: str
    answer: str
    sampling: dict[str, Any]
    snapshot_id: int | None
    created_at: datetime
