"""guardians linked to minors; who took each card

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import salud.storage.base

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('guardianships',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('minor_curp', sa.String(length=18), nullable=False),
    sa.Column('guardian_curp', sa.String(length=18), nullable=False),
    sa.Column('relationship', sa.String(length=10), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('linked_at', salud.storage.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('linked_by', sa.String(length=100), nullable=False),
    sa.Column('ended_at', salud.storage.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_by', sa.String(length=100), nullable=True),
    sa.Column('end_reason', sa.String(length=300), nullable=True),
    sa.CheckConstraint("relationship IN ('mother','father','guardian')", name=op.f('ck_guardianships_relationship')),
    sa.CheckConstraint('minor_curp <> guardian_curp', name=op.f('ck_guardianships_not_self')),
    sa.ForeignKeyConstraint(['minor_curp'], ['persons.curp'], name=op.f('fk_guardianships_minor_curp_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_guardianships'))
    )
    with op.batch_alter_table('guardianships', schema=None) as batch_op:
        batch_op.create_index('ix_guardianships_guardian', ['guardian_curp'], unique=False)
        batch_op.create_index('ix_guardianships_minor', ['minor_curp'], unique=False)

    # The minors enrolled before this revision: their guardian was recorded on the enrollment.
    op.execute(
        "INSERT INTO guardianships (minor_curp, guardian_curp, relationship, source, linked_at,"
        " linked_by) SELECT person_curp, guardian_curp, guardian_relationship,"
        " 'registro ' || folio, completed_at, 'migracion-0011' FROM enrollments"
        " WHERE status = 'completed' AND guardian_curp IS NOT NULL"
        " AND guardian_relationship IS NOT NULL AND guardian_curp <> person_curp"
    )

    with op.batch_alter_table('print_batch_cards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivered_to', sa.String(length=18), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('print_batch_cards', schema=None) as batch_op:
        batch_op.drop_column('delivered_to')

    with op.batch_alter_table('guardianships', schema=None) as batch_op:
        batch_op.drop_index('ix_guardianships_minor')
        batch_op.drop_index('ix_guardianships_guardian')

    op.drop_table('guardianships')
