"""lean FHIR index tables: no surrogate key, no foreign key

The index rows are derived from their resource and written with it in one transaction by the
repository alone; the surrogate key (a sequence and a B-tree) and the foreign key (a lookup
per row) were a large part of every write. See records/models.py.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 14:37:19.887060
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('fhir_tokens', 'fhir_references', 'fhir_dates')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(
                batch_op.f(f'fk_{table}_resource_pk_fhir_resources'), type_='foreignkey'
            )
            batch_op.drop_column('id')


def downgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == 'postgresql':
            op.execute(f'ALTER TABLE {table} ADD COLUMN id BIGSERIAL')  # noqa: S608
            op.create_primary_key(f'pk_{table}', table, ['id'])
        else:
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.add_column(sa.Column('id', sa.Integer(), nullable=True))
            op.execute(f'UPDATE {table} SET id = rowid')  # noqa: S608 (constant names)
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.alter_column('id', existing_type=sa.Integer(), nullable=False)
                batch_op.create_primary_key(f'pk_{table}', ['id'])
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                batch_op.f(f'fk_{table}_resource_pk_fhir_resources'), 'fhir_resources',
                ['resource_pk'], ['id'], ondelete='CASCADE',
            )
