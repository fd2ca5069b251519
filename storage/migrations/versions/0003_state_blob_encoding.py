"""State blobs record the lossless encoding their bytes are stored under (`encoding`).

"raw" keeps the bytes as given; "planes4" stores float data as entropy-coded byte planes (about 14%
smaller for model states; see storage/blob_encoding.py). Existing blobs are "raw" and stay readable.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "state_blobs", sa.Column("encoding", sa.String(16), server_default=sa.text("'raw'"), nullable=False)
    )


def downgrade() -> None:
    # Older code reads every blob as raw bytes: decode the encoded ones first.
    from megalodoc.storage.blob_encoding import decode_blob

    blobs = sa.table(
        "state_blobs", sa.column("sha256"), sa.column("size_bytes"), sa.column("data"), sa.column("encoding")
    )
    connection = op.get_bind()
    digests = connection.execute(sa.select(blobs.c.sha256).where(blobs.c.encoding != "raw")).scalars().all()
    for digest in digests:
        row = connection.execute(sa.select(blobs).where(blobs.c.sha256 == digest)).one()
        raw = decode_blob(row.data, row.encoding, row.size_bytes)
        connection.execute(sa.update(blobs).where(blobs.c.sha256 == digest).values(data=raw, encoding="raw"))
    with op.batch_alter_table("state_blobs") as batch:
        batch.drop_column("encoding")
