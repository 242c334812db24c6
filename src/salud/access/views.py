"""Reading the audit log: a person's "who looked at my data", and the auditors' view.
Reading the log is itself an access to personal data, and is recorded too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import audit
from salud.access.context import Caller
from salud.access.models import AuditEvent
from salud.access.permissions import Permission, Role
from salud.access.schemas import AccessPage, AccessRead
from salud.errors import InvalidInput
from salud.storage.base import PARTITION_KEY_LENGTH


def _read(e: AuditEvent) -> AccessRead:
    """The entry whole: what was read or changed (subject, detail) with who, where and why."""
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
        subject_type=e.subject_type,
        subject_id=e.subject_id,
        detail=e.detail,
    )


# What of an entry's detail the person sees in their own log: facts about their own data
# and the system's internals (the fields changed, the permission that was missing, a count).
# Not the keys that name someone else: a guardian's CURP (`guardian`: a refused attempt to act
# for a minor names who tried, which shown_actor hides), a duplicate's (`candidate`), an
# account (`username`, `actor`, `agent`); nor free text quoted from an input (`problem`).
# A key a new release adds is hidden until it is listed here. The auditors see it all.
PERSON_DETAIL_KEYS = frozenset({
    "alg", "biometric_matches", "bytes", "cards", "categories", "credential", "day",
    "decision", "documents", "duplicates", "entries", "export", "expires_at", "fields",
    "guardian_linked", "lines", "links", "missing", "module", "offset", "outcome",
    "permission", "quality", "reason", "relationship", "resources", "restricted", "resumed",
    "running", "sections", "self_declared", "side", "since", "source", "state", "status",
    "total", "types", "version", "waived", "why", "withheld",
})  # fmt: skip


def own_detail(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of an entry's detail the person it is about may read (PERSON_DETAIL_KEYS)."""
    if not detail:
        return None
    kept = {k: v for k, v in detail.items() if k in PERSON_DETAIL_KEYS}
    return kept or None


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
    if not caller.principal.may(Permission.AUDIT_READ):  # the person's own view
        page.items = [
            i.model_copy(update={
                "actor": shown_actor(caller, i.actor, i.role, i.outcome),
                "detail": own_detail(i.detail),
            })
            for i in page.items
        ]  # fmt: skip
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
