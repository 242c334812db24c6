"""a card's reason `reinstatement`: a supervisor's new card after a revocation (one made by
mistake), the revoked card staying revoked; `credentials.reason` widened to hold the word

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT = sa.text("status NOT IN ('revoked', 'superseded')")
OLD = "reason IN ('first', 'lost', 'damaged', 'renewal', 'update')"
NEW = "reason IN ('first', 'lost', 'damaged', 'renewal', 'update', 'reinstatement')"


def _reasons(check: str, length: int, was: int) -> None:
    # SQLite rebuilds the table for a new CHECK; the partial unique index (one current card a
    # person) is dropped first and made again after, so its WHERE is never lost on the way.
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_credentials_current_person", sqlite_where=CURRENT, postgresql_where=CURRENT
        )
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_credentials_reason"), type_="check")
        batch_op.alter_column(
            "reason", existing_type=sa.String(length=was), type_=sa.String(length=length),
            existing_nullable=False,
        )  # fmt: skip
        batch_op.create_check_constraint(op.f("ck_credentials_reason"), check)
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.create_index(
            "uq_credentials_current_person", ["person_curp"], unique=True,
            sqlite_where=CURRENT, postgresql_where=CURRENT,
        )  # fmt: skip


def upgrade() -> None:
    _reasons(NEW, 20, 10)


def downgrade() -> None:
    # The word goes with the schema that knows it: a reinstated card reads as a first card of
    # its own (its history, credential_events, still says "reinstatement: <why>").
    op.get_bind().execute(
        sa.text("UPDATE credentials SET reason = 'first' WHERE reason = 'reinstatement'")
    )
    _reasons(OLD, 10, 20)
