"""SQLite never hands a deleted document's, session's or turn's id out again (AUTOINCREMENT).

Without AUTOINCREMENT SQLite gives a new row the largest id in use + 1: deleting the newest document,
session or turn freed its id for the next one, and whatever still held the id (a web page, a script,
a command's `--session N`) then named the new row. The three tables are rebuilt with AUTOINCREMENT, rows
and ids kept; SQLite then starts counting from the largest id in the table (an id deleted before this
upgrade that was larger is not known any more). PostgreSQL sequences never hand an id out twice:
nothing changes there.

The rebuild drops the old tables while other tables refer to them, which SQLite allows only with foreign
key enforcement off; `megalodoc db upgrade` switches it off around the migrations and checks every
reference before it commits (storage/schema.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.schema import SchemaItem

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _documents() -> list[SchemaItem]:
    return [
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
    ]


def _sessions() -> list[SchemaItem]:
    return [
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
    ]


def _turns() -> list[SchemaItem]:
    return [
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
    ]


# table -> (its columns and constraints, its indexes (name, columns))
TABLES: dict[str, tuple[Callable[[], list[SchemaItem]], list[tuple[str, list[str]]]]] = {
    "documents": (_documents, []),
    "sessions": (_sessions, [("ix_sessions_document", ["document_id"])]),
    "turns": (_turns, [("ix_turns_session_parent", ["session_id", "parent_turn_id"])]),
}


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, (items, indexes) in TABLES.items():
        built = items()
        columns = ", ".join(item.name for item in built if isinstance(item, sa.Column))
        temporary = f"_rebuilt_{table}"
        op.create_table(temporary, *built, sqlite_autoincrement=autoincrement)
        op.execute(f"INSERT INTO {temporary} ({columns}) SELECT {columns} FROM {table}")  # ids kept
        op.drop_table(table)  # and its indexes
        op.rename_table(temporary, table)
        for name, on in indexes:
            op.create_index(name, table, on)


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
