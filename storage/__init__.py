"""Persistent store: documents, locations, chunk text, state snapshots and sessions (SQLAlchemy 2).

Nothing outside this package touches SQLAlchemy: every method of `Store` is one unit of work (its own
database session and transaction, retried when the database is busy) and returns frozen dataclasses.

Opening
    store = open_store(url=None)         # $MEGALODOC_DB, else ./megalodoc.db; a plain path is a SQLite file
    upgrade_database(url) / database_status(url)       # what `megalodoc db upgrade` / `db status` run
SQLite connections get WAL, foreign_keys=ON, synchronous=NORMAL and a busy timeout; readers never wait
for the writer, writers take the lock up front (BEGIN IMMEDIATE) and retry. Any SQLAlchemy URL works;
PostgreSQL (postgresql+psycopg://...) is the multi-machine backend. Opening checks the Alembic schema
revision (`SCHEMA_VERSION`): a new empty database is created at it, an older one raises
`SchemaBehindError` (run `megalodoc db upgrade`), a newer one raises `SchemaNewerError`.

Documents (one per content hash and model fingerprint; status ingesting/complete/failed/cancelled)
    create_document(content_hash, name, kind, source_path, tokenizer_fingerprint, model_fingerprint,
                    token_count=None) -> DocumentRecord          # kind: pdf, text, repo
    get_or_create_document(...) -> (DocumentRecord, created)
    get_document(id) (NotFoundError) / get_document_or_none(id) / find_document(content_hash, model_fp)
    list_documents(status=None), set_status(id, status, error=None, token_count=None),
    set_token_count(id, n), rename_document(id, name)
    delete_document(id, force=False)   # snapshots, locations, chunks, unused blobs; refused while
                                       # sessions point at it or a worker holds a live claim
Ingest workers (many processes, many machines; leases use the database clock)
    claim_document(id, worker_id, lease_seconds) -> bool   # one conditional UPDATE, never two holders
    claim_next_document(worker_id, lease_seconds) -> DocumentRecord | None
    heartbeat(id, worker_id, lease_seconds) -> bool        # False: claim lost or document cancelled
    release_document(id, worker_id) -> bool
Snapshots (content-addressed sha256 blobs, deduplicated, verified on every read; kept at rest as
lossless entropy-coded byte planes, open_store(state_encoding="planes4"|"raw"), see blob_encoding.py)
    add_snapshot(document_id, position, state_bytes, model_fingerprint, schema_version, metadata=None,
                 *, chunks=[ChunkText], locations=[Location], worker_id=None, tail_ids=()) -> SnapshotInfo
        One transaction: blob + snapshot row + chunk text + locations + committed_position = position.
        Positions strictly increase; re-adding identical bytes at a stored position returns the stored
        snapshot, different bytes raise SnapshotExistsError. With tail_ids the bytes are the state at the
        chunk boundary position - len(tail_ids) (SnapshotInfo.state_position) and the ids are re-read
        on restore; turns take the same pair as StatePayload(..., tail_ids=...).
    list_snapshots(document_id) (no blobs), get_snapshot(id), latest_snapshot_at(document_id, position)
    load_snapshot_bytes(id) -> bytes (CorruptSnapshotError on mismatch); the store never decodes them:
    states <-> bytes is megalodoc.model.state_codec (storage does not import the model)
Locations and text
    Location.page_range / file_lines / text_span; add_locations(id, locs); add_chunks(id, chunks)
    locate(id, position) -> LocationRecord (.display: "page 132", "src/app.py:40-88")
    locations_between(id, start, end), describe_range(id, start, end)
    position_of_page(id, page), position_of_line(id, path, line), position_of_char(id, offset)
    get_chunks(id, start, end), token_ids(id, start, end)
    search(query, document_id=None, limit=10, match="all"|"any") -> [ChunkHit]   # FTS5/BM25 or tsvector
        Words and "quoted phrases"; any text is safe (never an FTS syntax error); hits carry snippet
        (matches in **bold**), score (higher is better) and locations (.where: "page 132").
Chunk losses (the surprise curve: bits per byte per chunk, per document and model)
    put_chunk_losses(document_id, model_fingerprint, [ChunkLoss]), chunk_losses(document_id, model_fingerprint)
Sessions (a tree of turns)
    create_session(document_id, position, snapshot_id=None, title=None), get_session, list_sessions,
    rename_session, delete_session
    add_turn(session_id, parent_turn_id, prompt, answer, sampling, snapshot_id=None, *, state=None)
    get_turn, turn_path(turn_id) (first turn .. turn), list_children(session_id, parent_turn_id),
    list_turns(session_id)
Maintenance
    check_integrity(verify_blobs=True) -> [problem], collect_garbage()
    thin_snapshots(document_id, spacing_tokens) -> ThinningReport (keeps the last snapshot and those
    sessions start from; deletes unreferenced blobs), vacuum() (SQLite: give freed space back)
Errors: every failure is a StorageError (database errors are wrapped): NotFoundError, ConflictError
(DocumentExistsError, SnapshotExistsError), SnapshotOrderError, DocumentStatusError, DocumentInUseError,
ClaimLostError, CorruptSnapshotError, SchemaError (SchemaBehindError, SchemaNewerError), and
StorageFullError when the disk is full (the failed write is rolled back, earlier data kept). Bad
arguments raise ValueError / TypeError naming the value before anything is written.
"""

from megalodoc.storage.compaction import ThinningReport
from megalodoc.storage.engine import DB_ENV_VAR, DEFAULT_DB_FILE, resolve_url
from megalodoc.storage.errors import (
    ClaimLostError,
    ConflictError,
    CorruptSnapshotError,
    DocumentExistsError,
    DocumentInUseError,
    DocumentStatusError,
    NotFoundError,
    SchemaBehindError,
    SchemaError,
    SchemaNewerError,
    SnapshotExistsError,
    SnapshotOrderError,
    StorageError,
    StorageFullError,
)
from megalodoc.storage.records import (
    DOCUMENT_KINDS,
    DOCUMENT_STATUSES,
    ChunkHit,
    ChunkLoss,
    ChunkRecord,
    ChunkText,
    DocumentRecord,
    Location,
    LocationRecord,
    SessionRecord,
    SnapshotInfo,
    StatePayload,
    TurnRecord,
    describe_locations,
)
from megalodoc.storage.schema import SCHEMA_VERSION, SchemaStatus
from megalodoc.storage.store import Store, database_status, open_store, upgrade_database

__all__ = [
    "DB_ENV_VAR",
    "DEFAULT_DB_FILE",
    "DOCUMENT_KINDS",
    "DOCUMENT_STATUSES",
    "SCHEMA_VERSION",
    "ChunkHit",
    "ChunkLoss",
    "ChunkRecord",
    "ChunkText",
    "ClaimLostError",
    "ConflictError",
    "CorruptSnapshotError",
    "DocumentExistsError",
    "DocumentInUseError",
    "DocumentRecord",
    "DocumentStatusError",
    "Location",
    "LocationRecord",
    "NotFoundError",
    "SchemaBehindError",
    "SchemaError",
    "SchemaNewerError",
    "SchemaStatus",
    "SessionRecord",
    "SnapshotExistsError",
    "SnapshotInfo",
    "SnapshotOrderError",
    "StatePayload",
    "StorageError",
    "StorageFullError",
    "Store",
    "ThinningReport",
    "TurnRecord",
    "database_status",
    "describe_locations",
    "open_store",
    "resolve_url",
    "upgrade_database",
]
