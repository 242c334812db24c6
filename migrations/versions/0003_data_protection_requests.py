"""data protection requests

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:10:30.984328
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import salud.storage.base

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    
    op.create_table('data_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('folio', sa.String(length=24), nullable=False),
    sa.Column('person_curp', sa.String(length=18), nullable=False),
    sa.Column('kind', sa.String(length=14), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=False),
    sa.Column('requested_changes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('filed_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('filed_by', sa.String(length=100), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('answer', sa.String(length=2000), nullable=True),
    sa.Column('answered_at', salud.storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('answered_by', sa.String(length=100), nullable=True),
    sa.Column('resulting_version', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind IN ('access','rectification','cancellation','opposition')", name=op.f('ck_data_requests_kind')),
    sa.CheckConstraint("status IN ('received','granted','denied')", name=op.f('ck_data_requests_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_data_requests')),
    sa.UniqueConstraint('folio', name=op.f('uq_data_requests_folio'))
    )
    with op.batch_alter_table('data_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_data_requests_person_curp'), ['person_curp'], unique=False)
        batch_op.create_index('ix_data_requests_status_due', ['status', 'due_on'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('data_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_data_requests_status_due')
        batch_op.drop_index(batch_op.f('ix_data_requests_person_curp'))

    op.drop_table('data_requests')
    
