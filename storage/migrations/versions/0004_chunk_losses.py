"""Per-chunk loss of a document as read by one model (`chunk_losses`): the "surprise" curve.

Bits per byte of the tokens of chunk [token_start, token_end), predicted with the state carried from the
start of the document; one row per (document, model fingerprint, chunk). Computed on request and kept.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chunk_losses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("model_fingerprint", sa.String(128), nullable=False),
        sa.Column("token_start", sa.BigInteger(), nullable=False),
        sa.Column("token_end", sa.BigInteger(), nullable=False),
        sa.Column("bits_per_byte", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("token_start >= 0 AND token_end > token_start", name="ck_chunk_losses_range_valid"),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name="fk_chunk_losses_document_id_documents", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_chunk_losses"),
        sa.UniqueConstraint("document_id", "model_fingerprint", "token_start", name="uq_chunk_losses_document_model_start"),
    )


def downgrade() -> None:
    op.drop_table("chunk_losses")
