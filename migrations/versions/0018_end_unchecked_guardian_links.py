"""end the guardian links an earlier form of 0011's backfill made although the adult's ID
had been excused at the minor's enrollment (completion never links them: with the ID
excused, nobody checked who the adult was)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import salud.storage.base

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASON = "vínculo de la migración 0011 sin identificación revisada (la identificación se dispensó)"


def upgrade() -> None:
    conn = op.get_bind()
    waived = sa.text(
        "SELECT e.folio, e.waived FROM enrollments e JOIN guardianships g"
        " ON g.source = 'registro ' || e.folio"
        " WHERE g.linked_by = 'migracion-0011' AND g.ended_at IS NULL"
    ).columns(sa.column("folio"), sa.column("waived", salud.storage.base.Json))
    sources = [
        f"registro {r.folio}" for r in conn.execute(waived) if "guardian_id" in (r.waived or [])
    ]
    table = sa.table(
        "guardianships", sa.column("source"), sa.column("linked_by"),
        sa.column("ended_at", salud.storage.base.UTCDateTime(timezone=True)),
        sa.column("ended_by"), sa.column("end_reason"),
    )  # fmt: skip
    now = datetime.now(UTC)
    for start in range(0, len(sources), 5_000):
        conn.execute(
            table.update()
            .where(
                table.c.linked_by == "migracion-0011",
                table.c.ended_at.is_(None),
                table.c.source.in_(sources[start : start + 5_000]),
            )
            .values(ended_at=now, ended_by="migracion-0018", end_reason=REASON)
        )


def downgrade() -> None:
    """Nothing to undo: the links stay ended (reopening them would hand minors' cards over
    to adults nobody checked)."""
