"""SQLAlchemy 2 typed table models. Private to `storage/`: callers receive the dataclasses of `records.py`.

The Alembic migrations under `migrations/versions/` create exactly these tables (a test compares them).
Token offsets are half-open ranges [token_start, token_end). Times are UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names fixed by convention, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("content_hash", "model_fingerprint", name="uq_documents_content_model"),
        CheckConstraint("status IN ('ingesting', 'complete', 'failed', 'cancelled')", name="status_valid"),
        CheckConstraint("committed_position >= 0", name="position_nonnegative"),
        {"sqlite_autoincrement": True},  # a deleted document's id is never handed out again (0005)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    source_path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    token_count: Mapped[int | None] = mapped_column(BigInteger)
    committed_position: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    tokenizer_fingerprint: Mapped[str] = mapped_column(String(128))
    model_fingerprint: Mapped[str] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[float | None] = mapped_column(Double)  # epoch seconds, database clock
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LocationRow(Base):
    __tablename__ = "locations"
    __table_args__ = (
        CheckConstraint("token_start >= 0 AND token_end > token_start", name="range_valid"),
        Index("ix_locations_document_start", "document_id", "token_start"),
        Index("ix_locations_document_page", "document_id", "page"),
        Index("ix_locations_document_path_line", "document_id", "path", "line_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    token_start: Mapped[int] = mapped_column(BigInteger)
    token_end: Mapped[int] = mapped_column(BigInteger)
    page: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str | None] = mapped_column(Text)
    line_start: Mapped[int | None] = mapped_column(Integer)
    line_end: Mapped[int | None] = mapped_column(Integer)
    char_start: Mapped[int | None] = mapped_column(BigInteger)
    char_end: Mapped[int | None] = mapped_column(BigInteger)


class ChunkRow(Base):
    """Chunk text. Indexed for full-text search by `chunks_fts` (SQLite FTS5, kept in sync by triggers)
    or by the generated column `search_vector` with a GIN index (PostgreSQL); the migration creates
    both, and they stay out of this model on purpose."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "token_start", name="uq_chunks_document_start"),
        CheckConstraint("token_start >= 0 AND token_end > token_start", name="range_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    token_start: Mapped[int] = mapped_column(BigInteger)
    token_end: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    token_ids: Mapped[bytes | None] = mapped_column(LargeBinary)  # int32 little-endian, end - start of them


class StateBlob(Base):
    """Content-addressed state bytes. `size_bytes` precedes `data` so SQLite reads it without the blob.
    `sha256` and `size_bytes` describe the original bytes; `data` holds them under `encoding`
    (see blob_encoding.py: "raw" or the lossless "planes4")."""

    __tablename__ = "state_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    encoding: Mapped[str] = mapped_column(String(16), default="raw", server_default=text("'raw'"))


class SnapshotRow(Base):
    __tablename__ = "snapshots"
    __table_args__ = (
        CheckConstraint("kind IN ('document', 'turn')", name="kind_valid"),
        CheckConstraint("position >= 0", name="position_nonnegative"),
        # One document snapshot per (document, position); turn snapshots may share positions.
        Index(
            "uq_snapshots_document_position",
            "document_id",
            "position",
            unique=True,
            sqlite_where=text("kind = 'document'"),
            postgresql_where=text("kind = 'document'"),
        ),
        Index("ix_snapshots_document_kind_position", "document_id", "kind", "position"),
        Index("ix_snapshots_blob", "blob_sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(BigInteger)
    blob_sha256: Mapped[str] = mapped_column(ForeignKey("state_blobs.sha256"))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    model_fingerprint: Mapped[str] = mapped_column(String(128))
    schema_version: Mapped[int] = mapped_column(Integer)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The state is stored at the chunk boundary `position - len(tail ids)`; these ids (int32 little-endian,
    # fewer than a chunk) are re-read on restore. NULL: no tail, the state is at `position`.
    tail_ids: Mapped[bytes | None] = mapped_column(LargeBinary)


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_document", "document_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))
    position: Mapped[int] = mapped_column(BigInteger)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"))
    title: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TurnRow(Base):
    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_session_parent", "session_id", "parent_turn_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    parent_turn_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    prompt: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    sampling_json: Mapped[str] = mapped_column(Text, default="{}")
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChunkLossRow(Base):
    """Bits per byte of chunk [token_start, token_end) of a document as read by one model (the surprise
    curve), with the state carried from the document's start."""

    __tablename__ = "chunk_losses"
    __table_args__ = (
        UniqueConstraint(
            "document_id", "model_fingerprint", "token_start", name="uq_chunk_losses_document_model_start"
        ),
        CheckConstraint("token_start >= 0 AND token_end > token_start", name="range_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    model_fingerprint: Mapped[str] = mapped_column(String(128))
    token_start: Mapped[int] = mapped_column(BigInteger)
    token_end: Mapped[int] = mapped_column(BigInteger)
    bits_per_byte: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
