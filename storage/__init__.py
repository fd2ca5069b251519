"""Persistent store of what the model read: documents, state snapshots, chunk text, locations and
sessions, in SQLite or PostgreSQL through SQLAlchemy (nothing outside this package imports it).

Start with `open_store(url)` (a plain path is a SQLite file; `$MEGALODOC_DB` or ./megalodoc.db when
None): it checks the schema revision and returns a `Store`, whose methods are each one transaction
(retried while the database is busy) returning frozen records (`records.py`). The methods are grouped
by subject, one module each (e.g. `documents.py`, `snapshots.py`, `locations.py`, `search.py`,
`sessions.py`); snapshots hold state bytes the store never decodes (storage does not import the
model). Every failure is a `StorageError` (`errors.py`).
"""

from megalodoc.storage.compaction import ThinningReport
from megalodoc.storage.db_url import display_url
from megalodoc.storage.engine import DB_ENV_VAR, DEFAULT_DB_FILE, resolve_url
from megalodoc.storage.errors import (
    ClaimLostError,
    ConflictError,
    CorruptSnapshotError,
    DatabaseUrlError,
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
from megalodoc.storage.status import DocumentStatus, IngestStatus
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
    "DatabaseUrlError",
    "DocumentExistsError",
    "DocumentInUseError",
    "DocumentRecord",
    "DocumentStatus",
    "DocumentStatusError",
    "IngestStatus",
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
    "display_url",
    "open_store",
    "resolve_url",
    "upgrade_database",
]
