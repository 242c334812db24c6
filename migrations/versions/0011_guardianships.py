"""guardians linked to minors; who took each card

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:30:00.000000
"""

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op

import salud.storage.base

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guardianships",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("minor_curp", sa.String(length=18), nullable=False),
        sa.Column("guardian_curp", sa.String(length=18), nullable=False),
        sa.Column("relationship", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("linked_at", salud.storage.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("linked_by", sa.String(length=100), nullable=False),
        sa.Column("ended_at", salud.storage.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=100), nullable=True),
        sa.Column("end_reason", sa.String(length=300), nullable=True),
        sa.CheckConstraint(
            "relationship IN ('mother','father','guardian')",
            name=op.f("ck_guardianships_relationship"),
        ),
        sa.CheckConstraint("minor_curp <> guardian_curp", name=op.f("ck_guardianships_not_self")),
        sa.ForeignKeyConstraint(
            ["minor_curp"], ["persons.curp"], name=op.f("fk_guardianships_minor_curp_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardianships")),
    )
    with op.batch_alter_table("guardianships", schema=None) as batch_op:
        batch_op.create_index("ix_guardianships_guardian", ["guardian_curp"], unique=False)
        batch_op.create_index("ix_guardianships_minor", ["minor_curp"], unique=False)
        batch_op.create_index(
            "uq_guardianships_active",
            ["minor_curp", "guardian_curp"],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )

    backfill()

    with op.batch_alter_table("print_batch_cards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivered_to", sa.String(length=18), nullable=True))


def _age(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def backfill(chunk: int = 10_000) -> None:
    """The minors enrolled before this revision: the adult who came along was recorded on the
    enrollment. Linked as completion now links them: only those under 18 on the day of the
    visit (an adult may have come with a companion, who answers for nothing), and only where
    the adult's ID was checked (an excused ID links no one; 0018 ends the links an earlier
    form of this backfill made without that check). Read in chunks by enrollment id: a
    national drive has millions of them."""
    conn = op.get_bind()
    select = sa.text(
        "SELECT e.id, e.person_curp, e.guardian_curp, e.guardian_relationship, e.folio,"
        " e.completed_at, e.visit_day, p.birth_date, e.waived FROM enrollments e"
        " JOIN persons p ON p.curp = e.person_curp WHERE e.id > :after"
        " AND e.status = 'completed' AND e.guardian_curp IS NOT NULL"
        " AND e.guardian_relationship IS NOT NULL AND e.guardian_curp <> e.person_curp"
        " ORDER BY e.id LIMIT :chunk"
    ).columns(
        sa.column("id"),
        sa.column("person_curp"),
        sa.column("guardian_curp"),
        sa.column("guardian_relationship"),
        sa.column("folio"),
        sa.column("completed_at", salud.storage.base.UTCDateTime(timezone=True)),
        sa.column("visit_day", sa.Date()),
        sa.column("birth_date", sa.Date()),
        sa.column("waived", salud.storage.base.Json),
    )
    table = sa.table(
        "guardianships",
        sa.column("minor_curp"),
        sa.column("guardian_curp"),
        sa.column("relationship"),
        sa.column("source"),
        sa.column("linked_at", salud.storage.base.UTCDateTime(timezone=True)),
        sa.column("linked_by"),
    )
    after = 0
    while found := conn.execute(select, {"after": after, "chunk": chunk}).all():
        after = found[-1].id
        rows = [
            {
                "minor_curp": r.person_curp,
                "guardian_curp": r.guardian_curp,
                "relationship": r.guardian_relationship,
                "source": f"registro {r.folio}",
                "linked_at": r.completed_at,
                "linked_by": "migracion-0011",
            }
            for r in found
            if _age(r.birth_date, r.visit_day) < 18 and "guardian_id" not in (r.waived or [])
        ]
        if rows:
            op.bulk_insert(table, rows)


def downgrade() -> None:
    with op.batch_alter_table("print_batch_cards", schema=None) as batch_op:
        batch_op.drop_column("delivered_to")

    with op.batch_alter_table("guardianships", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_guardianships_active",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index("ix_guardianships_minor")
        batch_op.drop_index("ix_guardianships_guardian")

    op.drop_table("guardianships")
