"""the record's partition key as wide as a FHIR id

A Patient kept outside the registry is its own record's partition, and its id may have up to
64 characters (R4 datatypes.html#id); the key was a CURP's width (18), which refused three
official examples. Widening a varchar is a change of the catalog alone on PostgreSQL; SQLite
rebuilds the tables (batch mode), keeping every row.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("fhir_resources", "fhir_resource_versions", "audit_events")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "person_curp", existing_type=sa.String(length=18), type_=sa.String(length=64)
            )


def downgrade() -> None:
    # Refused by the database while a longer key is stored: such records would not fit.
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "person_curp", existing_type=sa.String(length=64), type_=sa.String(length=18)
            )
