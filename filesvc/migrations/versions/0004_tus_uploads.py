"""tus_uploads: resumable uploads in progress

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tus_uploads",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("storage_key", sa.String(255), nullable=False),
        sa.Column("storage_state", sa.JSON(), nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_tus_uploads_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tus_uploads")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_tus_uploads_storage_key")),
    )
    op.create_index(op.f("ix_tus_uploads_owner_id"), "tus_uploads", ["owner_id"])
    op.create_index(op.f("ix_tus_uploads_expires_at"), "tus_uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tus_uploads_expires_at"), table_name="tus_uploads")
    op.drop_index(op.f("ix_tus_uploads_owner_id"), table_name="tus_uploads")
    op.drop_table("tus_uploads")
