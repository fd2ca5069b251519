"""Snapshots store a chunk-boundary state plus the token ids after it (`tail_ids`).

A snapshot at `position` whose state was taken at the chunk boundary `position - len(tail_ids)`: the
ids are re-read on restore. Existing rows get NULL (no tail: the state is at `position`, as before), so
old databases keep working after `megalodoc db upgrade`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("snapshots", sa.Column("tail_ids", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("tail_ids")
