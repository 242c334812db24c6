"""care relationships consents emergency access

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 17:26:25.386562
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


import salud.storage.base

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    
    op.create_table('care_relationships',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_curp', sa.String(length=18), nullable=False),
    sa.Column('clues', sa.String(length=11), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('valid_from', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('valid_until', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_care_relationships'))
    )
    with op.batch_alter_table('care_relationships', schema=None) as batch_op:
        batch_op.create_index('ix_care_relationships_person_clues', ['person_curp', 'clues'], unique=False)

    op.create_table('consents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_curp', sa.String(length=18), nullable=False),
    sa.Column('institution_code', sa.SmallInteger(), nullable=False),
    sa.Column('clues', sa.String(length=11), nullable=True),
    sa.Column('granted_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('valid_until', salud.storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', salud.storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents'))
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index('ix_consents_person', ['person_curp'], unique=False)

    op.create_table('emergency_accesses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_curp', sa.String(length=18), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('clues', sa.String(length=11), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('opened_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reviewed_at', salud.storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reviewed_by', sa.String(length=100), nullable=True),
    sa.Column('review', sa.String(length=20), nullable=True),
    sa.Column('review_note', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_emergency_accesses'))
    )
    with op.batch_alter_table('emergency_accesses', schema=None) as batch_op:
        batch_op.create_index('ix_emergency_accesses_person_actor', ['person_curp', 'actor'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('emergency_accesses', schema=None) as batch_op:
        batch_op.drop_index('ix_emergency_accesses_person_actor')

    op.drop_table('emergency_accesses')
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index('ix_consents_person')

    op.drop_table('consents')
    with op.batch_alter_table('care_relationships', schema=None) as batch_op:
        batch_op.drop_index('ix_care_relationships_person_clues')

    op.drop_table('care_relationships')
    
