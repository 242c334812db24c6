"""Use cases of the FHIR store: create, read, vread, update (If-Match), delete (a new
deleted version), history and search, each through the access rules and the audit log.

Every clinical resource belongs to a person: its patient reference is `Patient/{CURP}`, the
registry's person. Who may read it is decided as for the registry (a clinician needs a care
relationship, the person's consent or an emergency access); writing needs the permission to
write the record. Each resource records which institution and unit wrote it (`meta.source`
and an institution tag), and the store keeps every version."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, or_, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import care
from salud.access.context import Caller
from salud.access.permissions import Permission, Role
from salud.access.scopes import allows
from salud.errors import InvalidInput, NotFound
from salud.identity import repository as persons
from salud.identity.catalogs import affiliation_catalog
from salud.identity.models import Person
from salud.kit import exactjson
from salud.kit.clock import utcnow
from salud.records import mirror, mirrored, repository
from salud.records.compartment import MAX_PATIENT_ID, PATIENT_COMPARTMENT, partition
from salud.records.indexing import (
    PARAMS,
    PATIENT_PATH,
    Index,
    fhir_instant,
    index,
    local_references,
    malformed_reference,
    patient_of,
    reference,
    reference_sites,
    unresolved_references,
)
from salud.records.mirror_query import paging_links
from salud.records.models import FhirResource, FhirResourceVersion
from salud.records.outcome import FhirError, Issue, is_number
from salud.records.patient import to_patient
from salud.records.sensitivity import CATEGORIES, stored_form
from salud.records.types import STORED_TYPES
from salud.records.validation import validate
from salud.storage.base import PARTITION_KEY_LENGTH
from salud.storage.fastread import FastReader

INSTITUTION_TAG = "https://salud.gob.mx/fhir/CodeSystem/institucion"


@dataclass(frozen=True, slots=True)
class Stored:
    fhir_id: str
    version_id: int
    last_updated: datetime
    content: str  # JSON


async def may(
    reader: FastReader, caller: Caller, permission: Permission, action: str, kind: str,
    curp: str | None, fhir_id: str | None, *, missing: bool = False,
) -> Caller:  # fmt: skip
    """Check the permission (and, for clinicians, the basis); the Caller to audit with.
    `missing`: the resource does not exist (so `curp` None says nothing of its owner)."""
    subject = f"{kind}/{fhir_id}" if fhir_id else kind
    p = caller.principal
    if p.role is Role.CLIENT and not allows(p.scopes, kind, permission is Permission.RECORD_WRITE):
        await caller.record(action, kind, person_curp=curp, subject_id=subject, outcome="denied")
        raise FhirError.one(403, "forbidden", f"los scopes del cliente no cubren {kind}")
    await caller.allow(
        permission, action, kind, person_curp=curp, subject_id=subject, resource=kind
    )
    if curp is None and not missing and kind in PATIENT_COMPARTMENT and care.needs_basis(p):
        # A person's kind of data that names no patient of this server (only an absolute URL
        # or an identifier): no clinician can have a basis for it, so none reads or writes it.
        await caller.record(
            action, kind, subject_id=subject, outcome="denied",
            detail={"missing": "a patient of this server"},
        )  # fmt: skip
        raise FhirError.one(
            403, "forbidden",
            f"{kind} guarda datos de un paciente y este no nombra a ninguno de este servidor "
            "(Patient/CURP): no hay base clínica posible para él",
        )  # fmt: skip
    if curp is not None and care.needs_basis(caller.principal):
        if caller.bases is not None and curp in caller.bases:
            basis = caller.bases[curp]
        else:
            basis = await care.clinical_basis(reader, caller.principal, curp)
            if caller.bases is not None:
                caller.bases[curp] = basis
        if basis is None:
            await caller.record(
                action, kind, person_curp=curp, subject_id=subject, outcome="denied",
                detail={"missing": "care, consent or emergency access"},
            )  # fmt: skip
            raise FhirError.one(
                403, "forbidden",
                "no hay relación de atención con su unidad ni consentimiento de la persona; "
                "en una urgencia abra un acceso de emergencia con el motivo",
            )  # fmt: skip
        caller = replace(caller, purpose=basis[0], reason=basis[1])
    return caller


def etag_version(value: Any, where: str) -> int | None:
    """The version of an If-Match / ifMatch value (W/"3" or "3"); None when absent."""
    if value is None:
        return None
    digits = value.removeprefix("W/").strip('"') if isinstance(value, str) else ""
    if not is_number(digits, 9):
        raise FhirError.one(400, "invalid", 'debe ser W/"<versionId>"', where)
    return int(digits)


def person_scope(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The search parameter that keeps a conditional create within the resource's person
    (none for types that belong to nobody: Organization, Location…)."""
    if doc["resourceType"] not in PATIENT_PATH:
        return []
    return [("patient", patient_of(doc) or "")]


def _patient_curp(doc: dict[str, Any]) -> str | None:
    return partition(doc)


async def check_references(
    session: AsyncSession, *docs: dict[str, Any], live: frozenset[str] = frozenset()
) -> None:
    """Interactive writes refuse a reference to nothing (FHIR R4 §3.1.1.4, referential
    integrity): every relative reference must name a live resource or a registered person.
    `live`: "Type/id" known to be live (written by this transaction), not looked up."""
    sites = [site for doc in docs for site in reference_sites(doc, str(doc.get("resourceType")))]
    bad = [(ref, at) for ref, at in sites if malformed_reference(ref)]
    if bad:
        raise FhirError(422, [
            Issue("value", f"referencia mal formada «{ref[:80]}»: se espera Tipo/id", at)
            for ref, at in bad
        ])  # fmt: skip
    missing = await dangling_references(session, *docs, live=live)
    if missing:
        gone = set(missing)
        at = [at for ref, at in sites if ref in gone or reference({"reference": ref}) in gone]
        raise FhirError(422, [
            Issue("not-found", "referencia a un recurso que no existe: " + ", ".join(missing),
                  at[0] if at else None),
            *(Issue("not-found", "referencia a un recurso que no existe", a) for a in at[1:]),
        ])  # fmt: skip


async def dangling_references(
    session: AsyncSession, *docs: dict[str, Any], live: frozenset[str] = frozenset()
) -> list[str]:
    """The references of these resources that name nothing: not a live resource, not a
    registered person, not a Patient kept outside the registry. One query per referenced
    type, however many resources are checked together (none for those in `live`)."""
    missing = sorted({ref for doc in docs for ref in unresolved_references(doc)})
    targets = {target for doc in docs for target in local_references(doc)} - live
    return missing + await missing_targets(session, targets)


async def missing_targets(session: AsyncSession, targets: set[str]) -> list[str]:
    """Which of these "Type/id" name nothing (one query per type)."""
    missing: list[str] = []
    wanted: dict[str, set[str]] = {}
    for target in targets:
        kind, _, fhir_id = target.partition("/")
        wanted.setdefault(kind, set()).add(fhir_id)
    for kind, ids in sorted(wanted.items()):
        if kind == "Patient":
            found = await persons.existing_curps(session, sorted(ids))
            if ids - found:
                found |= await repository.live_ids(session, kind, sorted(ids - found))
        elif kind in mirror.KINDS:  # the catalogs and the registry (records/mirror.py)
            found = await mirrored.existing(session, kind, sorted(ids))
        elif kind in STORED_TYPES:
            found = await repository.live_ids(session, kind, sorted(ids))
        else:
            found = set()
        missing += [f"{kind}/{i}" for i in sorted(ids - found)]
    return missing


def with_meta(doc: dict[str, Any], fhir_id: str, version: int, at: datetime, caller: Caller) -> str:
    p = caller.principal
    meta = dict(doc.get("meta") or {})
    meta.update({"versionId": str(version), "lastUpdated": fhir_instant(at)})
    # Where the entry came from is the server's to say, never the client's: a writer without
    # a unit (a machine client, an import without --clues) leaves no source, rather than
    # keeping whatever unit the document named (or the previous version's).
    meta.pop("source", None)
    if p.clues:
        meta["source"] = f"urn:clues:{p.clues}"
    tags = [t for t in meta.get("tag") or [] if t.get("system") != INSTITUTION_TAG]
    if p.institution_code is not None:
        entry = affiliation_catalog().get(p.institution_code)
        tag = {"system": INSTITUTION_TAG, "code": str(p.institution_code)}
        if entry:
            tag["display"] = entry.short_name
        tags.append(tag)
    if tags:
        meta["tag"] = tags
    out = {"resourceType": doc["resourceType"], "id": fhir_id, "meta": meta}
    out.update({k: v for k, v in doc.items() if k not in ("resourceType", "id", "meta")})
    return exactjson.dumps(out).decode()


@dataclass(slots=True)
class NewResource:
    """A resource checked and ready to insert: its row's values, index rows and auditor."""

    kind: str
    fhir_id: str
    curp: str | None
    row: dict[str, Any]
    idx: Index
    who: Caller


async def prepare_create(
    reader: FastReader, caller: Caller, doc: dict[str, Any], fhir_id: str | None = None
) -> NewResource:
    """Everything about a create but the writing: type, validation, permission and basis."""
    kind = doc["resourceType"]
    mirror.refuse_write(kind, fhir_id)
    validate(doc)
    curp = _patient_curp(doc)
    who = await may(
        reader, caller, Permission.RECORD_WRITE, f"records:{kind}:create", kind, curp, None
    )
    fhir_id = fhir_id or str(uuid.uuid4())
    now = utcnow()
    p = caller.principal
    row = {
        "resource_type": kind, "fhir_id": fhir_id, "version_id": 1, "last_updated": now,
        "deleted": False, "person_curp": curp, "institution_code": p.institution_code,
        "clues": p.clues, "author": p.username, "sensitivity": stored_form(doc),
        "content": with_meta(doc, fhir_id, 1, now, caller),
    }  # fmt: skip
    return NewResource(kind, fhir_id, curp, row, index(doc), who)


async def write_new(session: AsyncSession, news: list[NewResource]) -> list[Stored]:
    """Insert prepared resources together (one statement per table) and audit each."""
    pks = await repository.insert_current(session, [n.row for n in news])
    await repository.write_indexes(session, list(zip(pks, (n.idx for n in news), strict=True)))
    for n in news:
        await n.who.record(
            f"records:{n.kind}:create", n.kind, person_curp=n.curp,
            subject_id=f"{n.kind}/{n.fhir_id}", within=session,
        )  # fmt: skip
    return [Stored(n.fhir_id, 1, n.row["last_updated"], n.row["content"]) for n in news]


async def create(
    session: AsyncSession, reader: FastReader, caller: Caller, doc: dict[str, Any],
    fhir_id: str | None = None, *, check_refs: bool = True,
) -> Stored:  # fmt: skip
    new = await prepare_create(reader, caller, doc, fhir_id)
    if check_refs:
        await check_references(session, doc)
    return (await write_new(session, [new]))[0]


async def update(
    session: AsyncSession, reader: FastReader, caller: Caller, kind: str, fhir_id: str,
    doc: dict[str, Any], if_match: int | None, *, check_refs: bool = True,
) -> tuple[Stored, bool]:  # fmt: skip
    """Replace a resource (a new version); (stored, created). A stale If-Match is 412."""
    mirror.refuse_write(kind, fhir_id)
    if doc.get("id") != fhir_id:
        raise FhirError.one(400, "invalid", "el id del recurso debe ser el de la URL", f"{kind}.id")
    row = await repository.current(session, kind, fhir_id, for_update=True)
    if row is None:
        if if_match is not None:
            raise FhirError.one(412, "conflict", "If-Match sobre un recurso que no existe")
        return await create(session, reader, caller, doc, fhir_id, check_refs=check_refs), True
    validate(doc)
    curp = _patient_curp(doc)
    action = f"records:{kind}:update"
    who = await may(reader, caller, Permission.RECORD_WRITE, action, kind, row.person_curp, fhir_id)
    await _keep_restricted(reader, who, action, kind, fhir_id, row)
    if curp != row.person_curp:
        raise FhirError.one(422, "business-rule", "un recurso no cambia de paciente")
    if if_match is not None and if_match != row.version_id:
        raise FhirError.one(
            412, "conflict",
            f"la versión {if_match} ya no es la actual (es la {row.version_id}): vuelva a leer",
        )  # fmt: skip
    if check_refs:
        await check_references(session, doc)
    await repository.freeze(session, row)
    now = utcnow()
    p = caller.principal
    row.version_id += 1
    row.last_updated, row.deleted = now, False
    row.institution_code, row.clues, row.author = p.institution_code, p.clues, p.username
    row.sensitivity = stored_form(doc)
    row.content = with_meta(doc, fhir_id, row.version_id, now, caller)
    await session.flush()
    await repository.write_index(session, row.id, index(doc))
    await who.record(action, kind, person_curp=curp, subject_id=f"{kind}/{fhir_id}", within=session)
    return Stored(fhir_id, row.version_id, now, row.content), False


async def remove(
    session: AsyncSession, reader: FastReader, caller: Caller, kind: str, fhir_id: str
) -> None:
    """Delete: a new, deleted version; nothing is erased (history keeps every version)."""
    mirror.refuse_write(kind, fhir_id)
    if kind == "Patient":  # the registry's person (or one kept by a bulk load): never here
        raise FhirError.one(
            405, "not-supported",
            "Patient es de solo lectura en FHIR: la persona se da de alta y se corrige en el "
            "padrón (/api/v1/persons)",
        )  # fmt: skip
    if kind not in STORED_TYPES:
        raise FhirError.one(404, "not-supported", f"tipo de recurso no admitido: {kind}")
    action = f"records:{kind}:delete"
    row = await repository.current(session, kind, fhir_id, for_update=True)
    if row is None or row.deleted:
        # FHIR: deleting what is not there succeeds, but only for whom may delete this type
        # (anyone else would learn from a 204 against a 403 whether it exists).
        await may(reader, caller, Permission.RECORD_WRITE, action, kind, None, fhir_id,
                  missing=True)  # fmt: skip
        return
    who = await may(reader, caller, Permission.RECORD_WRITE, action, kind, row.person_curp, fhir_id)
    await _keep_restricted(reader, who, action, kind, fhir_id, row)
    await repository.freeze(session, row)
    row.version_id += 1
    row.deleted, row.last_updated, row.author = True, utcnow(), caller.principal.username
    await session.flush()
    await repository.write_index(session, row.id, index({"resourceType": kind}))
    await who.record(
        action, kind, person_curp=row.person_curp, subject_id=f"{kind}/{fhir_id}", within=session
    )


async def read(
    session: AsyncSession | None, reader: FastReader, caller: Caller, kind: str, fhir_id: str,
    version_id: int | None = None,
) -> Stored:  # fmt: skip
    """A resource by id. The current version of a stored type is read through the FastReader
    alone (the hot path passes no session); Patient, the mirrored types and an earlier
    version need the session."""
    if kind == "Patient" and len(fhir_id) > MAX_PATIENT_ID:  # no such partition key
        raise FhirError.one(404, "not-found", f"no existe Patient/{fhir_id}")
    if kind == "Patient":
        return await _read_patient(_needed(session), reader, caller, fhir_id, version_id)
    if kind in mirror.KINDS and mirror.owns(kind, fhir_id):
        shown = await mirrored.read(
            _needed(session), reader, caller, kind, fhir_id, version_id, may
        )
        return Stored(*shown)
    if kind not in STORED_TYPES:
        raise FhirError.one(404, "not-supported", f"tipo de recurso no admitido: {kind}")
    row: _Row | FhirResource | FhirResourceVersion | None
    if version_id is None and care.needs_basis(caller.principal):
        # The hot path of a clinician: the row and the basis for its person in one statement
        # (the basis is what `may` would look up next), through the FastReader, no ORM.
        found, basis = await repository.current_with_basis(reader, kind, fhir_id, caller.principal)
        row = _Row(**found) if found is not None else None
        if row is not None and row.person_curp is not None:
            bases = caller.bases if caller.bases is not None else {}
            bases.setdefault(row.person_curp, basis)
            caller = replace(caller, bases=bases)
    elif version_id is None:  # the hot path: raw statements through the FastReader, no ORM
        found = await repository.current_fast(reader, kind, fhir_id)
        row = _Row(**found) if found is not None else None
    else:
        row = await repository.version(_needed(session), kind, fhir_id, version_id)
    if row is None:
        raise FhirError.one(404, "not-found", f"no existe {kind}/{fhir_id}")
    action = f"records:{kind}:read"
    who = await may(reader, caller, Permission.RECORD_READ, action, kind, row.person_curp, fhir_id)
    await _keep_restricted(reader, who, action, kind, fhir_id, row)
    await who.record(action, kind, person_curp=row.person_curp, subject_id=f"{kind}/{fhir_id}")
    if row.deleted:
        raise FhirError.one(410, "deleted", f"{kind}/{fhir_id} fue eliminado")
    return Stored(fhir_id, row.version_id, row.last_updated, row.content)


def _needed(session: AsyncSession | None) -> AsyncSession:
    if session is None:  # a caller's mistake, not the client's: the hot path passes none
        raise RuntimeError("esta lectura necesita una sesión de base de datos")
    return session


@dataclass(frozen=True, slots=True)
class _Row:
    """A resource version's columns as the FastReader returns them."""

    version_id: int
    last_updated: datetime
    deleted: bool
    person_curp: str | None
    institution_code: int | None
    sensitivity: str
    content: str


async def _read_patient(
    session: AsyncSession, reader: FastReader, caller: Caller, curp: str,
    version_id: int | None = None,
) -> Stored:  # fmt: skip
    """The registry's person as a Patient. Only its current version is served as FHIR (the
    registry keeps every earlier one: /api/v1/persons/{CURP}/history): a vread of another
    version is a 404 that says so, not the current version under another number."""
    # The Patient is the registry's person: reading it is a read of the person (as the
    # registry's own API, and what `system/Patient.read` grants), not of the clinical record.
    who = await may(
        reader, caller, Permission.PERSON_READ, "records:Patient:read", "Patient", curp, curp
    )
    person = await persons.get_by_curp(session, curp)
    if person is None:  # a Patient kept outside the registry (bulk loads), else nothing
        found = await repository.current_fast(reader, "Patient", curp)
        if version_id is not None and found is not None and found["version_id"] != version_id:
            kept = await repository.version(session, "Patient", curp, version_id)
            found = None if kept is None else {
                "version_id": kept.version_id, "last_updated": kept.last_updated,
                "content": kept.content, "deleted": kept.deleted,
            }  # fmt: skip
        if found is not None and not found["deleted"]:
            await who.record(
                "records:Patient:read", "Patient", person_curp=curp, subject_id=f"Patient/{curp}"
            )
            return Stored(curp, found["version_id"], found["last_updated"], found["content"])
        await who.record("records:Patient:read", "Patient", person_curp=curp, outcome="not_found")
        raise FhirError.one(404, "not-found", f"no existe Patient/{curp}")
    if version_id is not None and version_id != person.version:
        await who.record(
            "records:Patient:read", "Patient", person_curp=curp, outcome="not_found",
            subject_id=f"Patient/{curp}/_history/{version_id}",
        )  # fmt: skip
        raise FhirError.one(
            404, "not-found",
            f"Patient/{curp} está en su versión {person.version}; las anteriores se consultan "
            f"en /api/v1/persons/{curp}/history",
        )  # fmt: skip
    await who.record(
        "records:Patient:read", "Patient", person_curp=curp, subject_id=f"Patient/{curp}"
    )
    return Stored(
        curp, person.version, person.updated_at, orjson.dumps(to_patient(person)).decode()
    )


def stored_json(content: str) -> orjson.Fragment:
    """A stored resource inside a Bundle, as stored: its text goes out as it is, neither
    parsed nor written again (exact numbers and all), by orjson or `exactjson.dumps`."""
    return orjson.Fragment(content)


def bundle_entry(
    base: str, kind: str, fhir_id: str, content: str, *, parsed: bool = False
) -> dict[str, Any]:
    resource = exactjson.loads(content) if parsed else stored_json(content)
    return {"fullUrl": f"{base}/{kind}/{fhir_id}", "resource": resource}


async def history(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, kind: str,
    fhir_id: str | None, page: Page, since: datetime | None,
) -> dict[str, Any]:  # fmt: skip
    """Instance or type history as a `history` Bundle, newest first, paged."""
    if (fhir_id is None and kind in mirror.READ_ONLY) or (
        fhir_id is not None and kind in mirror.KINDS and mirror.owns(kind, fhir_id)
    ):
        raise mirror.no_history(kind)
    if kind not in STORED_TYPES or (fhir_id is None and kind not in PARAMS):
        raise FhirError.one(404, "not-supported", f"tipo de recurso no admitido: {kind}")
    curp, row = None, None
    if fhir_id is not None:
        row = await repository.current(session, kind, fhir_id)
        if row is None:
            raise FhirError.one(404, "not-found", f"no existe {kind}/{fhir_id}")
        curp = row.person_curp
    elif kind in PATIENT_PATH:
        raise FhirError.one(
            400, "not-supported",
            f"no se sirve la historia de todos los {kind}: pida la de un recurso",
        )  # fmt: skip
    action = f"records:{kind}:history"
    who = await may(reader, caller, Permission.RECORD_READ, action, kind, curp, fhir_id)
    restricted = await _restricted_for(reader, who, curp)
    if fhir_id is not None and row is not None:
        await _refuse_restricted(who, action, kind, fhir_id, row, restricted)
    # An earlier version may hold what the person restricted (a diagnosis since recoded):
    # each version is shown only to whom its own categories allow, and counted only for them.
    total, rows = await repository.history(
        session, kind, fhir_id, page.count, page.offset, since,
        lambda model: hiding(who, restricted, model),
    )  # fmt: skip
    entries = []
    for version_id, at, deleted, rid, content in rows:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{kind}/{rid}"}
        if not deleted:
            entry["resource"] = stored_json(content)
        entry["request"] = {
            "method": "DELETE" if deleted else ("POST" if version_id == 1 else "PUT"),
            "url": f"{kind}/{rid}" if version_id == 1 else f"{kind}/{rid}/_history/{version_id}",
        }
        status = "204" if deleted else ("201" if version_id == 1 else "200")
        entry["response"] = {"status": status, "lastModified": fhir_instant(at),
                             "etag": f'W/"{version_id}"'}  # fmt: skip
        entries.append(entry)
    await who.record(
        action, kind, person_curp=curp, subject_id=f"{kind}/{fhir_id}" if fhir_id else kind,
        detail={"total": total, "offset": page.offset} if page.offset else {"total": total},
    )  # fmt: skip
    path = f"{kind}/{fhir_id}/_history" if fhir_id else f"{kind}/_history"
    links = paging_links(base, path, page.query, page.offset, page.count, total)
    return {"resourceType": "Bundle", "type": "history", "total": total, "link": links,
            "entry": entries}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a history: its size, where it starts, and the query that asked for it
    (for the paging links)."""

    count: int
    offset: int
    query: list[tuple[str, str]]


# --- restricted sensitive categories ---------------------------------------------------


def is_the_person(caller: Caller, curp: str | None) -> bool:
    p = caller.principal
    return p.role is Role.CITIZEN and p.curp is not None and p.curp == curp


def hidden_from(caller: Caller, sensitivity: str | None, institution: int | None,
                restricted: set[str]) -> set[str]:  # fmt: skip
    """The one rule of a restriction: the categories of an entry (its `sensitivity`, recorded
    by `institution`) that the person restricted (`restricted`, empty for the person) and
    this caller may not see: all of them, unless the caller's own institution recorded it. A
    caller without an institution, or an entry recorded without one, is never "the recording
    institution". `restriction_filters` is the same rule as SQL."""
    if not sensitivity or not restricted:
        return set()
    mine = caller.principal.institution_code
    if mine is not None and institution == mine:
        return set()
    return set(sensitivity.split(",")) & restricted


async def _restricted_for(reader: FastReader, caller: Caller, curp: str | None) -> set[str]:
    """The categories this caller may not see in this person's record (none for the person)."""
    if curp is None or is_the_person(caller, curp):
        return set()
    return set(await repository.restrictions_fast(reader, curp))


async def _keep_restricted(
    reader: FastReader, caller: Caller, action: str, kind: str, fhir_id: str,
    row: FhirResource | FhirResourceVersion | _Row,
) -> None:  # fmt: skip
    """A 403 (audited) when the person restricted this entry's category to the institution
    that recorded it and the caller is of another: for a read, and for an update or delete
    too (which would otherwise replace the entry, and take it over as its recorder)."""
    if row.sensitivity and row.person_curp and not is_the_person(caller, row.person_curp):
        restricted = set(await repository.restrictions_fast(reader, row.person_curp))
        await _refuse_restricted(caller, action, kind, fhir_id, row, restricted)


async def _refuse_restricted(
    caller: Caller, action: str, kind: str, fhir_id: str,
    row: FhirResource | FhirResourceVersion | _Row, restricted: set[str],
) -> None:  # fmt: skip
    hidden = hidden_from(caller, row.sensitivity, row.institution_code, restricted)
    if hidden:
        await caller.record(
            action, kind, person_curp=row.person_curp, subject_id=f"{kind}/{fhir_id}",
            outcome="denied", detail={"restricted": sorted(hidden)},
        )  # fmt: skip
        # The category stays in the audit entry: named in the answer, it would tell another
        # institution that the person has, say, a mental-health entry.
        raise FhirError.one(
            403, "suppressed",
            "la persona restringió esta entrada a la institución que la registró",
        )  # fmt: skip


async def restriction_filters(
    reader: FastReader, caller: Caller, curp: str
) -> list[ColumnElement[bool]]:
    """Search conditions that leave out what the person restricted to other institutions
    (`hidden_from` as SQL: for a caller without an institution every entry is another's)."""
    return hiding(caller, await _restricted_for(reader, caller, curp), FhirResource)


def hiding(
    caller: Caller, restricted: set[str], model: repository.VersionTable
) -> list[ColumnElement[bool]]:
    """`hidden_from` as SQL conditions on either table of versions."""
    mine = caller.principal.institution_code
    other: ColumnElement[bool] = true()
    if mine is not None:
        other = or_(model.institution_code.is_(None), model.institution_code != mine)
    return [~(model.sensitivity.contains(c) & other) for c in sorted(restricted)]


async def restrictions(session: AsyncSession, caller: Caller, curp: str) -> list[str]:
    await caller.allow(
        Permission.CONSENT_MANAGE, "records:restriction:list", "restriction", person_curp=curp
    )
    found = await repository.restrictions(session, curp)
    await caller.record("records:restriction:list", "restriction", person_curp=curp)
    return found


async def set_restrictions(
    session: AsyncSession, caller: Caller, curp: str, wanted: list[str]
) -> list[str]:
    """Replace the person's restricted categories (the person decides; audited)."""
    await caller.allow(
        Permission.CONSENT_MANAGE, "records:restriction:set", "restriction", person_curp=curp
    )
    unknown = sorted(set(wanted) - set(CATEGORIES))
    if unknown:
        raise InvalidInput.on(
            "categories", f"desconocidas: {', '.join(unknown)} (use {', '.join(CATEGORIES)})"
        )
    if not await persons.curp_exists(session, curp):
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    chosen = sorted(set(wanted))
    await repository.replace_restrictions(session, curp, chosen, caller.actor, utcnow())
    await caller.record(
        "records:restriction:set", "restriction", person_curp=curp, within=session,
        detail={"categories": chosen},
    )  # fmt: skip
    return chosen


async def open_record(
    session: AsyncSession, reader: FastReader, caller: Caller, curp: str, action: str
) -> tuple[Caller, Person | None, list[ColumnElement[bool]], dict[str, Any]]:
    """The door of every whole-record operation ($everything, $summary): the permission and
    a clinician's basis (a refusal is recorded), the person (None for a Patient kept outside
    the registry, whose record is read as any other), the Patient resource, and the
    conditions that leave out what the person restricted to other institutions and, for a
    machine client, the types its scopes do not name. Returns the Caller to record the read
    with (its purpose is the basis)."""
    if len(curp) > PARTITION_KEY_LENGTH:  # no record has such an id (and none is recorded)
        raise FhirError.one(404, "not-found", f"no existe Patient/{curp[:64]}…")
    who = await may(reader, caller, Permission.RECORD_READ, action, "Patient", curp, curp)
    person = await persons.get_by_curp(session, curp)
    if person is not None:
        patient = to_patient(person)
    else:  # a Patient kept outside the registry (bulk loads), as a read finds it
        found = await repository.current_fast(reader, "Patient", curp)
        if found is None or found["deleted"]:
            await who.record(action, "Patient", person_curp=curp, outcome="not_found")
            raise FhirError.one(404, "not-found", f"no existe Patient/{curp}")
        patient = exactjson.loads(found["content"])
    hidden = await restriction_filters(reader, who, curp)
    p = caller.principal
    if p.role is Role.CLIENT:  # a machine client reads only the types its scopes name
        # Every type kept in a record (searchable or read by id only: a CarePlan is theirs)
        readable = [k for k in sorted(STORED_TYPES) if allows(p.scopes, k, False)]
        hidden.append(FhirResource.resource_type.in_(readable))
    return who, person, hidden, patient


FOLLOW = 3  # rounds of following references from a whole-record operation's entries


# What a whole-record operation brings along from nobody's record: who and where served,
# and what was given; never a type that can hold a person's data while kept under no one
# (a Task, a Device, a List).
ALONG_FROM_NOBODY = frozenset(
    {"Practitioner", "PractitionerRole", "Organization", "Location", "Medication", "Substance"}
)


def _may_read_nobodys(caller: Caller, kind: str) -> bool:
    """Whether the caller may read a resource of this type kept under no one, as a direct
    read would allow (a citizen may not: their own record only)."""
    p = caller.principal
    if p.role is Role.CITIZEN or not p.may(Permission.RECORD_READ):
        return False
    return p.role is not Role.CLIENT or allows(p.scopes, kind, False)


async def referenced(
    session: AsyncSession, caller: Caller, curp: str, docs: list[dict[str, Any]],
    hidden: list[ColumnElement[bool]], *, outside_only: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """The resources these entries refer to, and those they refer to in turn: of the record
    (unless `outside_only`: $everything lists the record on its pages) or of nobody's (a
    Practitioner, a Medication: `ALONG_FROM_NOBODY`, what the caller may read), restrictions
    applied, and the catalogs' Organizations and Locations the caller may read. A reference
    to another person, to a type the store does not keep, or to something left out stays as
    it is: a whole-record operation never widens what the caller may read."""
    seen = {f"{d['resourceType']}/{d['id']}" for d in docs}
    found: list[dict[str, Any]] = []
    frontier = docs
    for _ in range(FOLLOW):
        wanted: dict[str, set[str]] = {}
        catalog: set[str] = set()
        for doc in frontier:
            for target in local_references(doc):
                kind, _, fhir_id = target.partition("/")
                if target in seen:
                    continue
                seen.add(target)
                if kind in mirror.KINDS and mirror.owns(kind, fhir_id):
                    catalog.add(target)
                elif kind in STORED_TYPES:
                    wanted.setdefault(kind, set()).add(fhir_id)
        frontier = []
        for kind, ids in sorted(wanted.items()):
            nobodys = kind in ALONG_FROM_NOBODY and _may_read_nobodys(caller, kind)
            if outside_only and not nobodys:
                continue
            rows = await repository.live_in_record_many(
                session, kind, sorted(ids), curp, hidden, nobody_only=outside_only
            )
            docs_found = [exactjson.loads(content) for _, content in rows]
            # Of nobody's record, only what may come along and the caller may read.
            frontier += [d for d in docs_found if partition(d) == curp or nobodys]
        found += frontier + await mirrored.catalog_targets(session, caller, catalog)
        if not frontier:
            break
    return found


async def everything(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, curp: str,
    count: int, offset: int,
) -> dict[str, Any]:  # fmt: skip
    """Patient/$everything: the person and every live entry of their record (paged), what
    the person restricted left out for other institutions."""
    action = "records:Patient:everything"
    who, person, hidden, patient = await open_record(session, reader, caller, curp, action)
    where = [FhirResource.person_curp == curp, *hidden]
    total, rows = await repository.search_all_types(session, where, count, offset)
    await who.record(action, "Patient", person_curp=curp, subject_id=f"Patient/{curp}",
                     detail={"total": total})  # fmt: skip
    entries: list[dict[str, Any]] = []
    # The Patient compartment's Coverage and the registry's RelatedPersons (who answers for
    # a minor): the person's data kept by the registry, on the first page.
    covered = [] if person is None else mirrored.coverages_for(caller, person)
    covered += [] if person is None else await mirrored.related_for(session, caller, person)
    if offset == 0:
        entries.append({"fullUrl": f"{base}/Patient/{curp}", "resource": patient})
        entries += [
            {"fullUrl": f"{base}/{c['resourceType']}/{c['id']}", "resource": c} for c in covered
        ]
    entries += [
        {"fullUrl": f"{base}/{kind}/{rid}", "resource": stored_json(content)}
        for kind, rid, content in rows
    ]
    # What this page's entries refer to outside the record (R4: "any resource referenced
    # from those"): a Practitioner, a Medication, the institution and unit that served.
    docs = [exactjson.loads(content) for _, _, content in rows]
    shown = covered if offset == 0 else []
    outside = await referenced(
        session, caller, curp, [*docs, *shown, {"resourceType": "Patient", "id": curp}],
        hidden, outside_only=True,
    )  # fmt: skip
    entries += [  # brought along, not counted in `total` (as a search's _include)
        {"fullUrl": f"{base}/{d['resourceType']}/{d['id']}", "resource": d,
         "search": {"mode": "include"}}
        for d in outside
    ]  # fmt: skip
    page = f"{base}/Patient/{curp}/$everything?_count={count}"
    links = [{"relation": "self", "url": page + (f"&_offset={offset}" if offset else "")}]
    if offset + count < total:
        links.append({"relation": "next", "url": f"{page}&_offset={offset + count}"})
    if offset > 0:
        previous = max(0, offset - count)
        links.append({"relation": "previous",
                      "url": page + (f"&_offset={previous}" if previous else "")})  # fmt: skip
    return {"resourceType": "Bundle", "type": "searchset", "total": total + 1 + len(covered),
            "link": links, "entry": entries}  # fmt: skip


async def reclassify(
    sessions: async_sessionmaker[AsyncSession], progress: Callable[[int], None] | None = None
) -> int:
    """Classify every stored version again with today's rules (after they change: the
    category is computed when a resource is written); how many changed."""
    return await repository.reclassify(sessions, stored_form, progress=progress)


async def stored_versions(sessions: async_sessionmaker[AsyncSession]) -> int:
    """How many versions the store keeps (current rows and the history)."""
    return await repository.count_versions(sessions)
