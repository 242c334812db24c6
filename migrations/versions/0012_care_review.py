"""self-declared care relationships reviewed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import salud.storage.base

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('care_relationships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('self_declared', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('reviewed_at', salud.storage.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reviewed_by', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('review', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('review_note', sa.String(length=500), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('care_relationships', schema=None) as batch_op:
        batch_op.drop_column('review_note')
        batch_op.drop_column('review')
        batch_op.drop_column('reviewed_by')
        batch_op.drop_column('reviewed_at')
        batch_op.drop_column('self_declared')

