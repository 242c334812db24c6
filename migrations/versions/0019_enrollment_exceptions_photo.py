"""every exception of an enrollment kept (who, when, why, what), the photo version taken
through the enrollment, and a `cancelled` state for a duplicate review left undecided

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

import salud.storage.base

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = salud.storage.base.Json
UTC_DATETIME = salud.storage.base.UTCDateTime(timezone=True)


def _enrollments(*extra: sa.ColumnClause[object]) -> sa.TableClause:
    return sa.table(
        "enrollments", sa.column("id"), sa.column("waived", Json), sa.column("exceptions", Json),
        *extra,
    )  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("exceptions", Json, nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(sa.Column("photo_version", sa.Integer(), nullable=True))
    conn = op.get_bind()
    old = _enrollments(
        sa.column("exception_reason"), sa.column("exception_by"),
        sa.column("exception_at", UTC_DATETIME),
    )  # fmt: skip
    # The one exception each enrollment kept (the last approved: an earlier one's author was
    # overwritten, and cannot be told apart any more), with everything it had excused.
    approved = conn.execute(
        sa.select(
            old.c.id, old.c.waived, old.c.exception_reason, old.c.exception_by,
            old.c.exception_at,
        ).where(old.c.exception_by.is_not(None))
    ).all()  # fmt: skip
    for row in approved:
        at = row.exception_at.isoformat() if row.exception_at is not None else None
        entry = {"by": row.exception_by, "at": at, "reason": row.exception_reason or "",
                 "waived": sorted(row.waived or [])}  # fmt: skip
        conn.execute(old.update().where(old.c.id == row.id).values(exceptions=[entry]))
    # Each enrollment keeps the photo it counted so far: the current one, if it was taken
    # since the enrollment started (the rule until now).
    conn.execute(
        sa.text(
            "UPDATE enrollments SET photo_version = (SELECT p.version FROM person_photos p"
            " WHERE p.person_curp = enrollments.person_curp"
            " AND p.updated_at >= enrollments.started_at)"
        )
    )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("exception_reason")
        batch_op.drop_column("exception_by")
        batch_op.drop_column("exception_at")
    with op.batch_alter_table("duplicate_reviews", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_duplicate_reviews_status"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_duplicate_reviews_status"),
            "status IN ('pending','distinct','duplicate','cancelled')",
        )
    # The reviews a cancelled enrollment left pending (hidden from the queue until now) are
    # closed as what they are.
    conn.execute(
        sa.text(
            "UPDATE duplicate_reviews SET status = 'cancelled', decided_by = 'migracion-0019',"
            " note = 'registro cancelado antes de resolverla'"
            " WHERE status = 'pending' AND enrollment_id IN"
            " (SELECT id FROM enrollments WHERE status = 'cancelled')"
        )
    )


def downgrade() -> None:
    conn = op.get_bind()
    # Back to one undecided state: a cancelled review is pending again (as it was left).
    conn.execute(
        sa.text("UPDATE duplicate_reviews SET status = 'pending' WHERE status = 'cancelled'")
    )
    with op.batch_alter_table("duplicate_reviews", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_duplicate_reviews_status"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_duplicate_reviews_status"), "status IN ('pending','distinct','duplicate')"
        )
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("exception_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("exception_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("exception_at", UTC_DATETIME, nullable=True))
    new = _enrollments(
        sa.column("exception_reason"), sa.column("exception_by"),
        sa.column("exception_at", UTC_DATETIME),
    )  # fmt: skip
    for row in conn.execute(sa.select(new.c.id, new.c.exceptions)).all():
        if row.exceptions:  # the single columns held the last one only
            last = row.exceptions[-1]
            at = datetime.fromisoformat(last["at"]) if last.get("at") else None
            conn.execute(new.update().where(new.c.id == row.id).values(
                exception_reason=last["reason"], exception_by=last["by"], exception_at=at,
            ))  # fmt: skip
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("photo_version")
        batch_op.drop_column("exceptions")
