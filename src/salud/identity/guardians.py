"""Who answers for a minor: the mother, father or guardian whose ID was checked at the
registration module (issue 6: "the ID of the mother, father or guardian, with the guardian
linked to the minor").

A link is made when a minor's enrollment completes, in the same transaction, and is a row of
its own (`Guardianship`): never edited nor deleted. Registry staff end a link with a reason
(a court ruling, a mistake); it lapses without a write when the minor turns 18. The link is
what lets a minor's plastic card be handed to that adult (enrollment/printing.py), and what
the adult can show for the minor; every read of it is audited like the registry's."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import care
from salud.access.context import Caller
from salud.access.permissions import Permission, Role
from salud.errors import Conflict, Forbidden, InvalidInput, NotFound
from salud.identity import curp as curp_rules
from salud.identity import repository
from salud.identity.models import Guardianship, Person
from salud.identity.schemas import (
    GuardianEnd,
    GuardianLink,
    GuardianRead,
    Relationship,
    WardRead,
)
from salud.identity.service import check_curp
from salud.kit.ages import is_minor
from salud.kit.clock import today_mx, utcnow
from salud.storage.fastread import FastReader


def _read(row: Guardianship, minor: Person) -> GuardianRead:
    # The adult's CURP only (what their ID shows), not their registry entry: reading that
    # would be an access to another person's data.
    return GuardianRead(
        guardian_curp=row.guardian_curp, relationship=Relationship(row.relationship),
        source=row.source,
        linked_at=row.linked_at, linked_by=row.linked_by, ended_at=row.ended_at,
        ended_by=row.ended_by, end_reason=row.end_reason,
        active=row.ended_at is None and is_minor(minor.birth_date, today_mx()),
    )  # fmt: skip


# Who made the links migration 0011 drew from earlier enrollments (0018 ends those made
# without a checked ID; one that staff link again is theirs, from then on).
MIGRATED = "migracion-0011"


async def link(
    session: AsyncSession, minor_curp: str, guardian_curp: str, relationship: Relationship,
    source: str, caller: Caller,
) -> None:  # fmt: skip
    """Link the adult to the minor within the caller's transaction (the caller has checked
    the permission: an operator completing the minor's enrollment). Linking again with the
    same relationship changes nothing; another relationship ends the old link first."""
    check_curp(guardian_curp, "guardian_curp")
    if guardian_curp == minor_curp:
        raise InvalidInput.on("guardian_curp", "es la CURP de la misma persona")
    now = utcnow()
    for row in await repository.guardianships(session, minor_curp, for_update=True):
        if row.guardian_curp != guardian_curp or row.ended_at is not None:
            continue
        if row.relationship == relationship.value and row.linked_by != MIGRATED:
            return
        row.ended_at, row.ended_by = now, caller.actor
        row.end_reason = (
            f"vínculo revisado en el módulo ({source})"  # staff now checked it: a row of theirs
            if row.relationship == relationship.value
            else f"parentesco corregido a {relationship.value} ({source})"
        )
    session.add(Guardianship(
        minor_curp=minor_curp, guardian_curp=guardian_curp, relationship=relationship.value,
        source=source, linked_at=now, linked_by=caller.actor, ended_at=None, ended_by=None,
        end_reason=None,
    ))  # fmt: skip
    try:
        await session.flush()
    except IntegrityError:  # uq_guardianships_active: linked at the same moment elsewhere
        raise Conflict("otra operación vinculó a esa persona al mismo tiempo; repita") from None
    await caller.record(
        "identity:guardian:link", "person", person_curp=minor_curp, within=session,
        detail={"guardian": guardian_curp, "relationship": relationship.value, "source": source},
    )  # fmt: skip


async def add(
    session: AsyncSession, minor_curp: str, data: GuardianLink, caller: Caller
) -> list[GuardianRead]:
    """Registry staff link an adult to a person who is a minor today, after checking the
    documents (`data.reason` says which); the person's links afterwards."""
    check_curp(minor_curp, "curp")
    await caller.allow(
        Permission.GUARDIAN_LINK, "identity:guardian:link", "person", person_curp=minor_curp
    )
    minor = await _minor(session, minor_curp)
    today = today_mx()
    if not is_minor(minor.birth_date, today):
        raise InvalidInput.on("curp", "la persona es mayor de edad: nadie responde por ella aquí")
    if is_minor(curp_rules.parse(data.guardian_curp).birth_date, today):
        raise InvalidInput.on("guardian_curp", "quien responde por un menor debe ser mayor de edad")
    await link(session, minor_curp, data.guardian_curp, data.relationship,
               data.reason, caller)  # fmt: skip
    rows = list(await repository.guardianships(session, minor_curp))
    # The answer lists every link of the minor (the guardians' CURPs): a read of its own,
    # recorded even when the link was already there and nothing changed, and one on each
    # guardian's log, whose CURP it discloses.
    await caller.record("identity:guardian:list", "person", person_curp=minor_curp,
                        within=session, detail={"links": len(rows)})  # fmt: skip
    await replace(caller, within=session).record_persons("identity:guardian:list", _disclosed(rows))
    return [_read(r, minor) for r in rows]


def _disclosed(rows: list[Guardianship]) -> list[str]:
    """The guardians a list of links names, once each: each is recorded in their own log, as
    any list that discloses persons records each one."""
    return sorted({r.guardian_curp for r in rows})


async def _minor(session: AsyncSession, curp: str) -> Person:
    person = await repository.get_by_curp(session, curp, affiliations=False)
    if person is None:
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    return person


async def list_guardians(
    session: AsyncSession, reader: FastReader, curp: str, caller: Caller
) -> list[GuardianRead]:
    """The person's links, ended ones included (the relation's history). Registry staff, the
    person, and a clinician with a basis for the person (care, consent or emergency)."""
    check_curp(curp, "curp")
    action = "identity:guardian:list"
    await caller.allow(Permission.PERSON_READ, action, "person", person_curp=curp)
    if care.needs_basis(caller.principal):
        basis = await care.clinical_basis(reader, caller.principal, curp)
        if basis is None:
            missing = {"missing": "care, consent or emergency access"}
            await caller.record(
                action, "person", person_curp=curp, outcome="denied", detail=missing
            )
            raise Forbidden("no hay relación de atención, consentimiento ni acceso de urgencia")
        caller = replace(caller, purpose=basis[0], reason=basis[1])
    minor = await _minor(session, curp)
    rows = list(await repository.guardianships(session, curp))
    await caller.record(action, "person", person_curp=curp, detail={"links": len(rows)})
    await caller.record_persons(action, _disclosed(rows))
    return [_read(r, minor) for r in rows]


async def end(
    session: AsyncSession, minor_curp: str, guardian_curp: str, data: GuardianEnd,
    caller: Caller,
) -> GuardianRead:  # fmt: skip
    """End a link that is in force, with the reason (registry staff); the row stays."""
    check_curp(minor_curp, "curp")
    check_curp(guardian_curp, "guardian_curp")
    await caller.allow(
        Permission.GUARDIAN_END, "identity:guardian:end", "person", person_curp=minor_curp
    )
    minor = await _minor(session, minor_curp)
    rows = await repository.guardianships(session, minor_curp, for_update=True)
    live = [r for r in rows if r.guardian_curp == guardian_curp and r.ended_at is None]
    if not live:
        raise NotFound("esa persona no tiene un vínculo vigente con esa CURP")
    now = utcnow()
    for row in live:  # one, by uq_guardianships_active; every one if ever there were more
        row.ended_at, row.ended_by, row.end_reason = now, caller.actor, data.reason
    await session.flush()
    await caller.record(
        "identity:guardian:end", "person", person_curp=minor_curp, within=session,
        detail={"guardian": guardian_curp},
    )  # fmt: skip
    return _read(live[0], minor)


async def answers_for(session: AsyncSession, minor: Person, guardian_curp: str) -> bool:
    """Whether this adult answers for this person today: a link not ended, and a minor."""
    if not is_minor(minor.birth_date, today_mx()):
        return False
    rows = await repository.guardianships(session, minor.curp)
    return any(r.guardian_curp == guardian_curp and r.ended_at is None for r in rows)


async def my_wards(session: AsyncSession, caller: Caller) -> list[WardRead]:
    """The minors the signed-in citizen answers for today (their links in force); each one
    shown is an entry in that minor's "who looked at my data"."""
    own = caller.principal.curp
    if caller.principal.role is not Role.CITIZEN or own is None:
        await caller.record("identity:guardian:wards", "person", outcome="denied")
        raise Forbidden("es la vista de la persona que inicia sesión")
    await caller.allow(Permission.PERSON_READ, "identity:guardian:wards", "person", person_curp=own)
    today = today_mx()
    found = [
        (p, r) for p, r in await repository.wards(session, own) if is_minor(p.birth_date, today)
    ]
    await caller.record_persons("identity:guardian:wards", [p.curp for p, _ in found])
    return [
        WardRead(curp=p.curp, given_names=p.given_names, first_surname=p.first_surname,
                 second_surname=p.second_surname, birth_date=p.birth_date,
                 relationship=Relationship(r))
        for p, r in found
    ]  # fmt: skip


async def acting_for(session: AsyncSession, caller: Caller, minor_curp: str) -> Caller:
    """The citizen, acting for a minor they answer for: the link is checked in the registry
    now (in force, and the person still a minor), never taken from the session. A refusal
    is recorded on the minor's record."""
    check_curp(minor_curp, "curp")
    p = caller.principal
    if p.role is not Role.CITIZEN or p.curp is None:
        await caller.record(
            "identity:guardian:act", "person", person_curp=minor_curp, outcome="denied"
        )
        raise Forbidden("solo la madre, padre o tutor vinculado actúa por un menor")
    minor = await repository.get_by_curp(session, minor_curp, affiliations=False)
    if minor is None or not await answers_for(session, minor, p.curp):
        await caller.record(
            "identity:guardian:act", "person", person_curp=minor_curp, outcome="denied",
            detail={"guardian": p.curp},
        )  # fmt: skip
        raise Forbidden(
            "no está vinculada en el padrón como madre, padre o tutor de esa persona menor de "
            "edad (el vínculo se hace en el módulo de registro)"
        )
    return replace(caller, wards=caller.wards | {minor_curp}, purpose="tutor")
