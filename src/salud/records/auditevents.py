"""The audit log as FHIR AuditEvent (R4 §6.4), read-only: auditors see every entry, a person
the entries about themselves ("who looked at my data"). The log itself stays the hash-chained
table of `access.audit`; this is a view of it, built on each request."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import audit
from salud.access.context import Caller
from salud.access.models import AuditEvent
from salud.access.permissions import Permission, Role
from salud.access.views import shown_actor, shown_persons
from salud.identity.catalogs import affiliation_catalog
from salud.records.indexing import fhir_instant
from salud.records.outcome import FhirError, is_number
from salud.storage.base import PARTITION_KEY_LENGTH

_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_ACTION = "https://salud.gob.mx/fhir/CodeSystem/accion-auditada"
_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_USER = "https://salud.gob.mx/fhir/sid/usuario"
_CLUES = "urn:oid:2.16.840.1.113883.4.631"
_OUTCOME = {"success": "0", "denied": "4", "not_found": "4", "error": "8"}
_VERBS = {"create": "C", "issue": "C", "read": "R", "search": "R", "list": "R", "history": "R",
          "validate": "R", "render": "R", "refresh": "R", "update": "U", "delete": "D"}  # fmt: skip
PARAMS = frozenset({"patient", "agent", "_count", "_before", "_format"})


def to_fhir(e: AuditEvent, actor: str | None = None) -> dict[str, Any]:
    """One audit entry as an AuditEvent resource (`actor`: who is shown, when not the
    entry's own actor: views.shown_actor)."""
    verb = e.action.rsplit(":", 1)[-1]
    who = actor or e.actor
    agent: dict[str, Any] = {
        "who": {"identifier": {"system": _USER, "value": who}, "display": who},
        "requestor": True,
        "role": [{"text": e.role}],
    }
    if e.purpose or e.reason:
        purpose: dict[str, Any] = {"text": e.reason or e.purpose}
        if e.purpose == "emergency":
            purpose["coding"] = [{"system": _REASON, "code": "ETREAT"}]
        agent["purposeOfUse"] = [purpose]
    agents = [agent]
    if e.clues or e.institution_code is not None:
        entry = affiliation_catalog().get(e.institution_code) if e.institution_code else None
        place: dict[str, Any] = {"requestor": False}
        if e.clues:
            place["who"] = {"identifier": {"system": _CLUES, "value": e.clues}}
        if entry:
            place.setdefault("who", {})["display"] = entry.short_name
        agents.append(place)
    entities: list[dict[str, Any]] = []
    if e.person_curp:
        entities.append(
            {"what": {"reference": f"Patient/{e.person_curp}"},
             "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"}}
        )  # fmt: skip
    if e.subject_id:
        what = (
            {"reference": e.subject_id}
            if "/" in e.subject_id and not e.subject_id.startswith("Patient/")
            else {"identifier": {"value": e.subject_id}}
        )
        entities.append({"what": what, "description": e.subject_type})
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(e.seq),
        "type": {"system": _TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": _ACTION, "code": e.action}],
        "action": _VERBS.get(verb, "E"),
        "recorded": fhir_instant(e.at),
        "outcome": _OUTCOME.get(e.outcome, "8"),
        "outcomeDesc": e.outcome,
        "agent": agents,
        "source": {
            "site": "Salud Universal",
            "observer": {"display": "Salud Universal"},
            "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if entities:
        resource["entity"] = entities
    return resource


async def _allowed(caller: Caller, curp: str | None) -> None:
    p = caller.principal
    if p.may(Permission.AUDIT_READ):
        return
    if curp is None:  # without AUDIT_READ only a person's own entries
        await caller.allow(Permission.AUDIT_READ, "records:AuditEvent:search", "AuditEvent")
    await caller.allow(
        Permission.ACCESS_LOG_READ, "records:AuditEvent:search", "AuditEvent", person_curp=curp
    )


async def search(
    session: AsyncSession, caller: Caller, base: str, query: list[tuple[str, str]]
) -> dict[str, Any]:
    unknown = sorted({n for n, _ in query if n not in PARAMS})
    if unknown:
        raise FhirError.one(
            400, "not-supported",
            f"parámetros no admitidos para AuditEvent: {', '.join(unknown)} "
            f"(admitidos: {', '.join(sorted(PARAMS))})",
        )  # fmt: skip
    given = dict(query)
    curp = given.get("patient", "").removeprefix("Patient/") or None
    if curp is not None and (len(curp) > PARTITION_KEY_LENGTH or "/" in curp):
        raise FhirError.one(400, "invalid", "patient: no es una persona (Patient/id)", "patient")
    count = given.get("_count", "50")
    before = given.get("_before")
    if not is_number(count) or not 1 <= int(count) <= 200:
        raise FhirError.one(400, "invalid", "_count debe ser un entero de 1 a 200")
    if before is not None and not is_number(before):
        raise FhirError.one(400, "invalid", "_before debe ser un número de entrada")
    await _allowed(caller, curp)
    if "agent" in given and caller.principal.role is Role.CITIZEN:
        # Filtering one's log by a name would tell whether that person tried (views.shown_actor)
        raise FhirError.one(400, "not-supported", "agent: solo para auditoría", "agent")
    limit = int(count)
    cursor = int(before) if before else None
    if curp is not None:
        rows = list(  # the agent filtered in the query: a page is full when more exist
            await audit.events_for_person(
                session, curp, limit=limit + 1, before_seq=cursor, actor=given.get("agent")
            )
        )
    else:
        rows = list(
            await audit.events(
                session, limit=limit + 1, before_seq=cursor, actor=given.get("agent")
            )
        )
    await caller.record(
        "records:AuditEvent:search", "AuditEvent", person_curp=curp,
        detail={"agent": given.get("agent")},
    )  # fmt: skip
    page = rows[:limit]
    if curp is None:  # the whole log: each person it names is recorded on their own
        await caller.record_persons("records:AuditEvent:search", shown_persons(page))
    links = [{"relation": "self", "url": f"{base}/AuditEvent?{urlencode(query)}"}]
    if len(rows) > limit and page:
        kept = [(n, v) for n, v in query if n != "_before"] + [("_before", str(page[-1].seq))]
        links.append({"relation": "next", "url": f"{base}/AuditEvent?{urlencode(kept)}"})
    return {
        "resourceType": "Bundle", "type": "searchset", "link": links,
        "entry": [
            {"fullUrl": f"{base}/AuditEvent/{r.seq}",
             "resource": to_fhir(r, shown_actor(caller, r.actor, r.role, r.outcome)),
             "search": {"mode": "match"}}
            for r in page
        ],
    }  # fmt: skip


async def read(session: AsyncSession, caller: Caller, seq: str) -> dict[str, Any]:
    if not is_number(seq):
        raise FhirError.one(404, "not-found", f"no existe AuditEvent/{seq}")
    row = await session.scalar(select(AuditEvent).where(AuditEvent.seq == int(seq)))
    if row is None:
        raise FhirError.one(404, "not-found", f"no existe AuditEvent/{seq}")
    if not caller.principal.may(Permission.AUDIT_READ):
        await caller.allow(
            Permission.ACCESS_LOG_READ, "records:AuditEvent:read", "AuditEvent",
            person_curp=row.person_curp,
        )  # fmt: skip
        if row.person_curp is None:
            await caller.allow(Permission.AUDIT_READ, "records:AuditEvent:read", "AuditEvent")
    await caller.record(
        "records:AuditEvent:read", "AuditEvent", person_curp=row.person_curp, subject_id=seq
    )
    return to_fhir(row, shown_actor(caller, row.actor, row.role, row.outcome))
