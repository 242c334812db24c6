"""Reading the audit log: a person's "who looked at my data", and the auditors' view.
Reading the log is itself an access to personal data, and is recorded too."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import audit
from salud.access.context import Caller
from salud.access.models import AuditEvent
from salud.access.permissions import Permission, Role
from salud.access.schemas import AccessPage, AccessRead
from salud.errors import InvalidInput
from salud.storage.base import PARTITION_KEY_LENGTH


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


HIDDEN_ACTOR = "otra persona (ciudadano)"


def shown_actor(caller: Caller, actor: str, role: str, outcome: str) -> str:
    """Who the person reading their own log sees: another citizen's refused attempt names
    them by their CURP (their sign-in name), so the person sees that someone tried, not
    who; the auditors see the name. A parent or guardian acting for a minor is allowed, and
    shown. Every view of the log (REST and FHIR AuditEvent) applies it."""
    own = caller.principal.role is Role.CITIZEN
    if own and role == Role.CITIZEN.value and outcome != "success" and actor != caller.actor:
        return HIDDEN_ACTOR
    return actor


def _page(rows: Sequence[AuditEvent], limit: int) -> AccessPage:
    items = [_read(e) for e in rows[:limit]]
    return AccessPage(
        items=items, next_before=items[-1].seq if len(rows) > limit and items else None
    )


async def accesses_to_person(
    session: AsyncSession, caller: Caller, curp: str, *, limit: int, before: int | None
) -> AccessPage:
    if len(curp) > PARTITION_KEY_LENGTH:  # no one's record has such a key: named, never written
        raise InvalidInput.on("curp", f"es demasiado largo (máximo {PARTITION_KEY_LENGTH})")
    await caller.allow(
        Permission.ACCESS_LOG_READ, "access:person-log:read", "person", person_curp=curp
    )
    rows = await audit.events_for_person(session, curp, limit=limit + 1, before_seq=before)
    await caller.record("access:person-log:read", "person", person_curp=curp)
    page = _page(rows, limit)
    page.items = [
        i.model_copy(update={"actor": shown})
        if (shown := shown_actor(caller, i.actor, i.role, i.outcome)) != i.actor
        else i
        for i in page.items
    ]
    return page


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
    page = _page(rows, limit)
    # The page names persons and what was done with their data: each is in their own log,
    # as any list that discloses persons records each one (it left a single entry).
    await caller.record_persons("access:audit:read", shown_persons(rows[:limit]))
    return page


def shown_persons(rows: Sequence[AuditEvent]) -> list[str]:
    """The persons a page of the log names, once each."""
    return sorted({r.person_curp for r in rows if r.person_curp})
