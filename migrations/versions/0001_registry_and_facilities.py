"""registry and facilities

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 15:45:16.799842
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import salud.storage.base

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    
    op.create_table('health_unit_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('clues', sa.String(length=11), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('snapshot', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('recorded_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_health_unit_versions'))
    )
    with op.batch_alter_table('health_unit_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_health_unit_versions_clues'), ['clues'], unique=False)

    op.create_table('health_units',
    sa.Column('clues', sa.String(length=11), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('name_key', sa.String(length=300), nullable=False),
    sa.Column('institution_code', sa.String(length=5), nullable=False),
    sa.Column('institution_name', sa.String(length=200), nullable=True),
    sa.Column('state_code', sa.String(length=2), nullable=False),
    sa.Column('state_key', sa.String(length=2), nullable=True),
    sa.Column('municipality_key', sa.String(length=3), nullable=True),
    sa.Column('municipality_name', sa.String(length=150), nullable=True),
    sa.Column('locality_key', sa.String(length=4), nullable=True),
    sa.Column('locality_name', sa.String(length=200), nullable=True),
    sa.Column('unit_type', sa.String(length=120), nullable=True),
    sa.Column('typology', sa.String(length=150), nullable=True),
    sa.Column('level_of_care', sa.SmallInteger(), nullable=True),
    sa.Column('status', sa.String(length=60), nullable=True),
    sa.Column('in_operation', sa.Boolean(), nullable=True),
    sa.Column('street', sa.String(length=300), nullable=True),
    sa.Column('postal_code', sa.String(length=5), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('location_precision', sa.String(length=12), nullable=False),
    sa.Column('location_note', sa.Text(), nullable=True),
    sa.Column('hours', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('field_dates', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('clues', name=op.f('pk_health_units'))
    )
    with op.batch_alter_table('health_units', schema=None) as batch_op:
        batch_op.create_index('ix_health_units_state_institution', ['state_code', 'institution_code'], unique=False)

    op.create_table('persons',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('curp', sa.String(length=18), nullable=False),
    sa.Column('given_names', sa.String(length=100), nullable=False),
    sa.Column('first_surname', sa.String(length=100), nullable=False),
    sa.Column('second_surname', sa.String(length=100), nullable=True),
    sa.Column('first_surname_key', sa.String(length=100), nullable=False),
    sa.Column('given_names_key', sa.String(length=100), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('birth_state', sa.String(length=2), nullable=False),
    sa.Column('sex', sa.String(length=1), nullable=False),
    sa.Column('nationality', sa.String(length=3), nullable=False),
    sa.Column('blood_type', sa.String(length=7), nullable=False),
    sa.Column('organ_donor', sa.String(length=10), nullable=False),
    sa.Column('organ_donor_date', sa.Date(), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('address_state', sa.String(length=2), nullable=True),
    sa.Column('address_municipality', sa.String(length=3), nullable=True),
    sa.Column('address_locality', sa.String(length=4), nullable=True),
    sa.Column('postal_code', sa.String(length=5), nullable=True),
    sa.Column('street', sa.String(length=200), nullable=True),
    sa.Column('photo_ref', sa.String(length=200), nullable=True),
    sa.Column('assigned_clues', sa.String(length=11), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('updated_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.Column('change_reason', sa.String(length=300), nullable=True),
    sa.CheckConstraint("organ_donor IN ('yes','no','not_stated')", name=op.f('ck_persons_organ_donor')),
    sa.CheckConstraint("sex IN ('H','M','X')", name=op.f('ck_persons_sex')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_persons_version_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_persons')),
    sa.UniqueConstraint('curp', name=op.f('uq_persons_curp'))
    )
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index('ix_persons_surname_birth', ['first_surname_key', 'birth_date'], unique=False)

    op.create_table('affiliations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('institution_code', sa.SmallInteger(), nullable=False),
    sa.Column('member_number', sa.String(length=30), nullable=True),
    sa.Column('regime', sa.String(length=40), nullable=True),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.CheckConstraint("status IN ('active','suspended','ended')", name=op.f('ck_affiliations_status')),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_affiliations_person_id_persons'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_affiliations'))
    )
    with op.batch_alter_table('affiliations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_affiliations_person_id'), ['person_id'], unique=False)

    op.create_table('person_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('snapshot', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('recorded_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_person_versions_person_id_persons'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_versions')),
    sa.UniqueConstraint('person_id', 'version', name='uq_person_versions_pv')
    )
    


def downgrade() -> None:
    
    op.drop_table('person_versions')
    with op.batch_alter_table('affiliations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_affiliations_person_id'))

    op.drop_table('affiliations')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_index('ix_persons_surname_birth')

    op.drop_table('persons')
    with op.batch_alter_table('health_units', schema=None) as batch_op:
        batch_op.drop_index('ix_health_units_state_institution')

    op.drop_table('health_units')
    with op.batch_alter_table('health_unit_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_health_unit_versions_clues'))

    op.drop_table('health_unit_versions')
    
