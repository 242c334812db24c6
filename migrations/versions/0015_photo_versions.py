"""a replaced photo is kept: earlier versions of each person's photo, sealed as they were

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import salud.storage.base

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "person_photo_versions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("person_curp", sa.String(length=18), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("image_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("media_type", sa.String(length=20), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("taken_at", salud.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("taken_by", sa.String(length=100), nullable=False),
        sa.Column("replaced_at", salud.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("replaced_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_photo_versions")),
        sa.UniqueConstraint(
            "person_curp", "version", name=op.f("uq_person_photo_versions_cv")
        ),
    )


def downgrade() -> None:
    op.drop_table("person_photo_versions")
