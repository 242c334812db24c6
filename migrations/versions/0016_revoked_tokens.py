"""access ended before its tokens expire: signed-out sessions, and accounts or clients whose
earlier tokens are void

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import salud.storage.base

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sid", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("revoked_at", salud.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", salud.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
        sa.UniqueConstraint("sid", name=op.f("uq_revocations_sid")),
    )
    op.create_index(
        op.f("ix_revocations_expires_at"), "revocations", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_revocations_expires_at"), table_name="revocations")
    op.drop_table("revocations")
