"""progress snapshots: the dashboard's figures taken in the background

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 17:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import salud.storage.base

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('progress_snapshots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('taken_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('figures', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_progress_snapshots'))
    )
    with op.batch_alter_table('progress_snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_progress_snapshots_taken_at'), ['taken_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('progress_snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_progress_snapshots_taken_at'))
    op.drop_table('progress_snapshots')
