"""Initial schema: documents, locations, chunks (+ full-text index), state blobs, snapshots, sessions, turns.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# SQLite: an external-content FTS5 table over chunks.text, kept in sync by triggers; porter stemming
# so "tokenizer" also finds "tokenizers". PostgreSQL: a stored, generated english text search vector
# (ranking reads it instead of re-parsing every matching text) with a GIN index. Neither is part of the
# ORM models: only the search code uses them.
SQLITE_FTS = [
    "CREATE VIRTUAL TABLE chunks_fts USING fts5("
    "text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
]
POSTGRES_FTS = [
    "ALTER TABLE chunks ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX ix_chunks_search_vector ON chunks USING GIN (search_vector)",
]


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("token_count", sa.BigInteger(), nullable=True),
        sa.Column("committed_position", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("tokenizer_fingerprint", sa.String(128), nullable=False),
        sa.Column("model_fingerprint", sa.String(128), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Double(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('ingesting', 'complete', 'failed', 'cancelled')", name="ck_documents_status_valid"
        ),
        sa.CheckConstraint("committed_position >= 0", name="ck_documents_position_nonnegative"),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.UniqueConstraint("content_hash", "model_fingerprint", name="uq_documents_content_model"),
    )
    op.create_table(
        "locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("token_start", sa.BigInteger(), nullable=False),
        sa.Column("token_end", sa.BigInteger(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("line_start", sa.Integer(), nullable=True),
        sa.Column("line_end", sa.Integer(), nullable=True),
        sa.Column("char_start", sa.BigInteger(), nullable=True),
        sa.Column("char_end", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("token_start >= 0 AND token_end > token_start", name="ck_locations_range_valid"),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name="fk_locations_document_id_documents", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_locations"),
    )
    op.create_index("ix_locations_document_start", "locations", ["document_id", "token_start"])
    op.create_index("ix_locations_document_page", "locations", ["document_id", "page"])
    op.create_index("ix_locations_document_path_line", "locations", ["document_id", "path", "line_start"])

    op.create_table(
        "chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("token_start", sa.BigInteger(), nullable=False),
        sa.Column("token_end", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("token_ids", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("token_start >= 0 AND token_end > token_start", name="ck_chunks_range_valid"),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name="fk_chunks_document_id_documents", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_chunks"),
        sa.UniqueConstraint("document_id", "token_start", name="uq_chunks_document_start"),
    )
    op.create_table(
        "state_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_state_blobs"),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("model_fingerprint", sa.String(128), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('document', 'turn')", name="ck_snapshots_kind_valid"),
        sa.CheckConstraint("position >= 0", name="ck_snapshots_position_nonnegative"),
        sa.ForeignKeyConstraint(
            ["blob_sha256"], ["state_blobs.sha256"], name="fk_snapshots_blob_sha256_state_blobs"
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name="fk_snapshots_document_id_documents", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
    )
    op.create_index(
        "uq_snapshots_document_position",
        "snapshots",
        ["document_id", "position"],
        unique=True,
        sqlite_where=sa.text("kind = 'document'"),
        postgresql_where=sa.text("kind = 'document'"),
    )
    op.create_index("ix_snapshots_document_kind_position", "snapshots", ["document_id", "kind", "position"])
    op.create_index("ix_snapshots_blob", "snapshots", ["blob_sha256"])

    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], name="fk_sessions_document_id_documents"),
        sa.ForeignKeyConstraint(["snapshot_id"], ["snapshots.id"], name="fk_sessions_snapshot_id_snapshots"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_document", "sessions", ["document_id"])

    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("parent_turn_id", sa.Integer(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("sampling_json", sa.Text(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_turn_id"], ["turns.id"], name="fk_turns_parent_turn_id_turns", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_turns_session_id_sessions", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["snapshot_id"], ["snapshots.id"], name="fk_turns_snapshot_id_snapshots"),
        sa.PrimaryKeyConstraint("id", name="pk_turns"),
    )
    op.create_index("ix_turns_session_parent", "turns", ["session_id", "parent_turn_id"])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    elif dialect == "postgresql":
        for statement in POSTGRES_FTS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TABLE IF EXISTS chunks_fts")
    for table in ("turns", "sessions", "snapshots", "state_blobs", "chunks", "locations", "documents"):
        op.drop_table(table)
