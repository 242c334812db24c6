"""a unit's previous CLUES key (an SSA or state unit that passed to IMSS-Bienestar)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("health_units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_clues", sa.String(length=11), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_health_units_previous_clues"), ["previous_clues"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("health_units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_health_units_previous_clues"))
        batch_op.drop_column("previous_clues")
