"""On what basis a clinician may read a person's data: a care relationship at the
clinician's unit, the person's consent for the clinician's institution or unit, or a
break-the-glass emergency access (time-limited, with a stated reason, reviewed by an
auditor and shown to the person in "who looked at my data")."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.models import CareRelationship, Consent, EmergencyAccess
from salud.access.permissions import Permission, Role
from salud.access.principal import Principal
from salud.access.schemas import (
    CareCreate,
    CareRead,
    ConsentCreate,
    ConsentRead,
    EmergencyOpen,
    EmergencyRead,
    EmergencyReview,
)
from salud.errors import Conflict, InvalidInput, NotFound
from salud.kit.clock import utcnow
from salud.storage.base import UTCDateTime
from salud.storage.fastread import FastQuery, FastReader

EMERGENCY_HOURS = 4

Basis = tuple[str, str | None]  # ("care" | "consent" | "emergency", the emergency's reason)

# The three bases of the person whose CURP is the SQL expression `{person}`, as columns of one
# row; parameters :clues, :inst, :actor and :now (UTC). A statement that reads something of a
# person can carry them, and answer what and whether in one round trip (records' hot read).
BASIS_COLUMNS = (
    "EXISTS (SELECT 1 FROM care_relationships c WHERE c.person_curp = {person} "
    "AND c.clues = :clues AND c.valid_from <= :now AND c.valid_until > :now) AS basis_care, "
    "EXISTS (SELECT 1 FROM consents k WHERE k.person_curp = {person} "
    "AND k.institution_code IN (:inst, :inst_alias) AND (k.clues IS NULL OR k.clues = :clues) "
    "AND k.revoked_at IS NULL AND (k.valid_until IS NULL OR k.valid_until > :now)) "
    "AS basis_consent, "
    "(SELECT e.reason FROM emergency_accesses e WHERE e.person_curp = {person} "
    "AND e.actor = :actor AND e.expires_at > :now ORDER BY e.expires_at DESC LIMIT 1) "
    "AS basis_emergency"
)
BASIS_PARAMS = ("clues", "inst", "inst_alias", "actor", "now")
# One institution under two DGIS codes: IMSS-Bienestar's regime (10) and its OPD (14). A
# consent under either is a consent for its staff, whichever code their account carries.
INSTITUTION_ALIAS = {10: 14, 14: 10}

_BASIS = FastQuery(
    text("SELECT " + BASIS_COLUMNS.format(person=":curp")).bindparams(
        bindparam("now", type_=UTCDateTime)
    ),
    ["curp", *BASIS_PARAMS],
)


def basis_params(principal: Principal) -> dict[str, Any]:
    inst = principal.institution_code
    return {"clues": principal.clues, "inst": inst,
            "inst_alias": INSTITUTION_ALIAS.get(inst, inst) if inst is not None else None,
            "actor": principal.username, "now": utcnow()}  # fmt: skip


def basis_from(row: Mapping[str, Any]) -> Basis | None:
    """The basis BASIS_COLUMNS found (care first, then consent, then emergency), or None."""
    if row["basis_care"]:
        return "care", None
    if row["basis_consent"]:
        return "consent", None
    if row["basis_emergency"] is not None:
        return "emergency", row["basis_emergency"]
    return None


async def clinical_basis(reader: FastReader, principal: Principal, curp: str) -> Basis | None:
    """("care" | "consent" | "emergency", reason) or None when there is no basis."""
    rows = await reader.fetch(_BASIS, curp=curp, **basis_params(principal))
    return basis_from(rows[0])


@functools.lru_cache(maxsize=64)
def _bases_query(count: int) -> FastQuery:
    """The bases of `count` persons (:p0, :p1…) in one statement, one row each."""
    one = "SELECT {n} AS i, " + BASIS_COLUMNS  # the person's place in the list, a constant
    sql = " UNION ALL ".join(one.format(n=n, person=f":p{n}") for n in range(count))
    statement = text(sql).bindparams(bindparam("now", type_=UTCDateTime))
    return FastQuery(statement, [f"p{n}" for n in range(count)] + list(BASIS_PARAMS))


async def clinical_bases(
    reader: FastReader, principal: Principal, curps: Sequence[str]
) -> dict[str, Basis | None]:
    """clinical_basis for several persons, in one round trip per 50 of them."""
    found: dict[str, Basis | None] = {}
    for start in range(0, len(curps), 50):
        chunk = curps[start : start + 50]
        values = {f"p{n}": curp for n, curp in enumerate(chunk)}
        query = _bases_query(len(chunk))
        for row in await reader.fetch(query, **values, **basis_params(principal)):
            found[chunk[int(row["i"])]] = basis_from(row)
    return found


async def record_shown(
    caller: Caller, action: str, curps: Iterable[str], bases: Mapping[str, Basis | None]
) -> None:
    """One entry per person a search showed a clinician, each with the basis it was shown on
    as its purpose (and an emergency's reason), as a read records it. A person without a
    basis was not shown: no entry."""
    for curp in curps:
        basis = bases.get(curp)
        if basis is not None:
            who = replace(caller, purpose=basis[0], reason=basis[1])
            await who.record(action, "person", person_curp=curp)


def _must_be_registered(registered: bool) -> None:
    if not registered:
        raise NotFound("no hay ninguna persona registrada con esa CURP")


def _unit(caller: Caller) -> str:
    if not caller.principal.clues:
        raise InvalidInput.on("clues", "su cuenta no está adscrita a una unidad (CLUES)")
    return caller.principal.clues


async def record_care(
    session: AsyncSession, caller: Caller, curp: str, data: CareCreate, registered: bool
) -> CareRead:
    """The person is being cared for at the caller's own unit (reception or clinician).
    `registered`: whether the CURP is in the registry (looked up by the caller, told only
    after the permission check, so that it reveals nothing to whom may not ask)."""
    await caller.allow(Permission.CARE_RECORD, "access:care:record", "person", person_curp=curp)
    _must_be_registered(registered)
    now = utcnow()
    care = CareRelationship(
        person_curp=curp,
        clues=_unit(caller),
        kind=data.kind,
        valid_from=now,
        valid_until=now + timedelta(hours=data.hours),
        created_by=caller.actor,
        # Reception records the person's arrival; a clinician who records it gives themselves
        # the basis to read, which an auditor reviews (issue 3: access is on a care
        # relationship, not on the clinician's word alone).
        self_declared=caller.principal.role is Role.CLINICIAN,
    )
    session.add(care)
    await session.flush()
    await caller.record(
        "access:care:record", "person", person_curp=curp, subject_id=care.clues, within=session,
        detail={"self_declared": care.self_declared},
    )  # fmt: skip
    return _care(care)


def _care(c: CareRelationship) -> CareRead:
    return CareRead(
        id=c.id, curp=c.person_curp, clues=c.clues, kind=c.kind, valid_until=c.valid_until,
        created_by=c.created_by, self_declared=c.self_declared, review=c.review,
        reviewed_by=c.reviewed_by,
    )  # fmt: skip


async def unreviewed_care(session: AsyncSession, caller: Caller, limit: int) -> list[CareRead]:
    """Care relationships clinicians recorded for themselves, not yet reviewed, oldest first."""
    await caller.allow(Permission.AUDIT_READ, "access:care:list", "care")
    rows = await session.execute(
        select(CareRelationship)
        .where(CareRelationship.self_declared, CareRelationship.reviewed_at.is_(None))
        .order_by(CareRelationship.id)
        .limit(limit)
    )
    found = [_care(c) for c in rows.scalars()]
    await caller.record_persons("access:care:list", (c.curp for c in found))
    return found


async def review_care(
    session: AsyncSession, caller: Caller, care_id: int, data: EmergencyReview
) -> CareRead:
    await caller.allow(Permission.ACCESS_REVIEW, "access:care:review", "care")
    care = await session.get(CareRelationship, care_id, with_for_update=True)
    if care is None or not care.self_declared:
        raise NotFound("no hay esa relación de atención por revisar")
    if care.reviewed_at is not None:
        raise Conflict("esa relación de atención ya fue revisada")
    await _mark_reviewed(session, caller, care, data, "access:care:review")
    return _care(care)


async def _mark_reviewed(
    session: AsyncSession, caller: Caller, row: CareRelationship | EmergencyAccess,
    data: EmergencyReview, action: str,
) -> None:  # fmt: skip
    """An auditor's review of a self-declared care relationship or an emergency access,
    written and audited in the caller's transaction."""
    row.reviewed_at, row.reviewed_by = utcnow(), caller.actor
    row.review, row.review_note = data.outcome, data.note
    await session.flush()
    await caller.record(
        action, "person", person_curp=row.person_curp, subject_id=str(row.id),
        detail={"outcome": data.outcome}, within=session,
    )  # fmt: skip


async def grant_consent(
    session: AsyncSession,
    caller: Caller,
    curp: str,
    data: ConsentCreate,
    registered: bool,
    check_target: Callable[[], Awaitable[None]],
) -> ConsentRead:
    """`registered` as for `record_care`; `check_target` checks the institution and unit
    against the catalogs (which sit above this layer), after the permission: a caller who
    may not grant learns nothing from the body's errors."""
    await caller.allow(
        Permission.CONSENT_MANAGE, "access:consent:grant", "person", person_curp=curp
    )
    _must_be_registered(registered)
    await check_target()
    consent = Consent(
        person_curp=curp,
        institution_code=data.institution_code,
        clues=data.clues,
        granted_at=utcnow(),
        valid_until=data.valid_until,
        revoked_at=None,
    )
    session.add(consent)
    await session.flush()
    await caller.record(
        "access:consent:grant", "consent", person_curp=curp, subject_id=str(consent.id),
        within=session,
    )  # fmt: skip
    return _consent(consent)


def _consent(c: Consent) -> ConsentRead:
    return ConsentRead(
        id=c.id,
        institution_code=c.institution_code,
        clues=c.clues,
        granted_at=c.granted_at,
        valid_until=c.valid_until,
        revoked_at=c.revoked_at,
    )


async def consents(session: AsyncSession, caller: Caller, curp: str) -> list[ConsentRead]:
    await caller.allow(Permission.CONSENT_MANAGE, "access:consent:read", "person", person_curp=curp)
    rows = await session.execute(
        select(Consent).where(Consent.person_curp == curp).order_by(Consent.id)
    )
    found = [_consent(c) for c in rows.scalars()]
    await caller.record("access:consent:read", "consent", person_curp=curp)
    return found


async def revoke_consent(
    session: AsyncSession, caller: Caller, curp: str, consent_id: int
) -> ConsentRead:
    await caller.allow(
        Permission.CONSENT_MANAGE, "access:consent:revoke", "person", person_curp=curp
    )
    consent = await session.get(Consent, consent_id)
    if consent is None or consent.person_curp != curp:
        raise NotFound("no existe ese consentimiento")
    if consent.revoked_at is None:
        consent.revoked_at = utcnow()
        await session.flush()
    await caller.record(
        "access:consent:revoke", "consent", person_curp=curp, subject_id=str(consent_id),
        within=session,
    )  # fmt: skip
    return _consent(consent)


async def open_emergency(
    session: AsyncSession, caller: Caller, curp: str, data: EmergencyOpen, registered: bool
) -> EmergencyRead:
    """Break the glass: allowed to clinicians only, with a reason, for a few hours."""
    await caller.allow(
        Permission.EMERGENCY_OPEN, "access:emergency:open", "person", person_curp=curp
    )
    _must_be_registered(registered)
    now = utcnow()
    emergency = EmergencyAccess(
        person_curp=curp,
        actor=caller.actor,
        clues=caller.principal.clues,
        reason=data.reason,
        opened_at=now,
        expires_at=now + timedelta(hours=EMERGENCY_HOURS),
    )
    session.add(emergency)
    await session.flush()
    # Recorded with its purpose and reason as entry fields, which the person's "who looked
    # at my data" shows (in `detail` alone, the person saw an opening without a why).
    await replace(caller, purpose="emergency", reason=data.reason).record(
        "access:emergency:open",
        "person",
        person_curp=curp,
        subject_id=str(emergency.id),
        detail={"reason": data.reason, "expires_at": emergency.expires_at.isoformat()},
        within=session,
    )
    return _emergency(emergency)


def _emergency(e: EmergencyAccess) -> EmergencyRead:
    return EmergencyRead(
        id=e.id,
        curp=e.person_curp,
        actor=e.actor,
        clues=e.clues,
        reason=e.reason,
        opened_at=e.opened_at,
        expires_at=e.expires_at,
        review=e.review,
        reviewed_by=e.reviewed_by,
    )


async def unreviewed(session: AsyncSession, caller: Caller, limit: int) -> list[EmergencyRead]:
    await caller.allow(Permission.AUDIT_READ, "access:emergency:list", "emergency")
    rows = await session.execute(
        select(EmergencyAccess)
        .where(EmergencyAccess.reviewed_at.is_(None))
        .order_by(EmergencyAccess.id)
        .limit(limit)
    )
    found = [_emergency(e) for e in rows.scalars()]
    await caller.record_persons("access:emergency:list", (e.curp for e in found))
    return found


async def review(
    session: AsyncSession, caller: Caller, emergency_id: int, data: EmergencyReview
) -> EmergencyRead:
    await caller.allow(Permission.ACCESS_REVIEW, "access:emergency:review", "emergency")
    emergency = await session.get(EmergencyAccess, emergency_id, with_for_update=True)
    if emergency is None:
        raise NotFound("no existe ese acceso de emergencia")
    if emergency.reviewed_at is not None:
        raise Conflict("ese acceso de emergencia ya fue revisado")
    await _mark_reviewed(session, caller, emergency, data, "access:emergency:review")
    return _emergency(emergency)


def needs_basis(principal: Principal) -> bool:
    """Clinicians read across institutions only on a basis (care, consent, emergency)."""
    return principal.role is Role.CLINICIAN
