"""Reading the audit log: a person's "who looked at my data", and the auditors' view.
Reading the log is itself an access to personal data, and is recorded too."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import audit
from salud.access.context import Caller
from salud.access.models import AuditEvent
from salud.access.permissions import Permission
from salud.access.schemas import AccessPage, AccessRead


def _read(e: AuditEvent) -> AccessRead:
    return AccessRead(
        seq=e.seq,
        at=e.at,
        actor=e.actor,
        role=e.role,
        institution_code=e.institution_code,
        clues=e.clues,
        action=e.action,
        purpose=e.purpose,
        reason=e.reason,
        outcome=e.outcome,
        person_curp=e.person_curp,
    )


def _page(rows: Sequence[AuditEvent], limit: int) -> AccessPage:
    items = [_read(e) for e in rows[:limit]]
    return AccessPage(
        items=items, next_before=items[-1].seq if len(rows) > limit and items else None
    )


async def accesses_to_person(
    session: AsyncSession, caller: Caller, curp: str, *, limit: int, before: int | None
) -> AccessPage:
    await caller.allow(
        Permission.ACCESS_LOG_READ, "access:person-log:read", "person", person_curp=curp
    )
    rows = await audit.events_for_person(session, curp, limit=limit + 1, before_seq=before)
    await caller.record("access:person-log:read", "person", person_curp=curp)
    return _page(rows, limit)


async def audit_events(
    session: AsyncSession,
    caller: Caller,
    *,
    limit: int,
    before: int | None,
    actor: str | None,
    action: str | None,
) -> AccessPage:
    await caller.allow(Permission.AUDIT_READ, "access:audit:read", "audit")
    rows = await audit.events(
        session, limit=limit + 1, before_seq=before, actor=actor, action=action
    )
    await caller.record("access:audit:read", "audit", detail={"actor": actor, "action": action})
    return _page(rows, limit)
