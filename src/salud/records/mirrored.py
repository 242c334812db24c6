"""Reading the mirrored types (builders in mirror.py): read, search and existence checks
against the registry, the CLUES catalog and the institution catalogs.

Organization and Location hold no personal data (public DGIS catalogs): as in the catalog
API they need the facility-read permission (and, for a machine client, a scope for the type)
and are not audited. A Coverage discloses a person's affiliation: it needs the registry's
person-read permission (what a `Coverage.read` scope grants), a clinician's basis (care,
consent or emergency), and every read and search is audited with the CURP, as a Patient
read is; so does a RelatedPerson of the registry (who answers for a minor), with the minor's
CURP. `service.py` passes its access check (`gate`) in, so the rules stay in one place."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.permissions import Permission, Role
from salud.access.scopes import allows
from salud.config import get_settings
from salud.facilities import repository as units
from salud.facilities.gazetteer import State, StateTable
from salud.facilities.institutions import AFFILIATION_CODE, INSTITUTIONS
from salud.facilities.models import HealthUnit
from salud.identity import repository as persons
from salud.identity.catalogs import affiliation_catalog
from salud.identity.models import Person
from salud.kit.clock import today_mx
from salud.kit.text import search_key
from salud.records import repository
from salud.records.mirror import (
    KINDS,
    Entitlement,
    Institution,
    Link,
    coverage,
    coverage_updated,
    institutions,
    location,
    organization,
    owns,
    parse_coverage_id,
    parse_guardian_id,
    related_person,
)
from salud.records.mirror_query import (
    LOCATION_STATUS,
    PARAMS,
    Query,
    capabilities,
    identifier_keys,
    matching,
    narrow,
    parse_query,
    reference_target,
    searchset,
    string_match,
)
from salud.records.outcome import FhirError
from salud.records.patient import to_patient
from salud.storage.fastread import FastReader

__all__ = [
    "KINDS", "PARAMS", "capabilities", "coverages_for", "existing", "owns", "read",
    "related_for", "search",
]  # fmt: skip

Gate = Callable[
    [FastReader, Caller, Permission, str, str, str | None, str | None], Coroutine[Any, Any, Caller]
]


class Mirrored(NamedTuple):
    """As service.Stored: id, version, last change, JSON."""

    fhir_id: str
    version_id: int
    last_updated: datetime
    content: str


@dataclass(frozen=True, slots=True)
class Directory:
    by_id: dict[str, Institution]
    by_clues: dict[str, Institution]
    by_dgis: dict[int, Institution]
    updated: datetime  # when the DGIS catalog file was last changed
    states: tuple[State, ...]


@lru_cache(maxsize=4)
def _directory(data_dir: Path) -> Directory:
    items = institutions(affiliation_catalog(data_dir), INSTITUTIONS, AFFILIATION_CODE)
    stamp = (data_dir / "dgis" / "afiliacion.csv").stat().st_mtime
    table = StateTable.load(data_dir / "inegi" / "estados_curp_inegi.csv")
    return Directory(
        by_id={i.fhir_id: i for i in items},
        by_clues={i.clues_code: i for i in items if i.clues_code},
        by_dgis={i.dgis_code: i for i in items if i.dgis_code is not None},
        updated=datetime.fromtimestamp(stamp, UTC),
        states=tuple(s for c in sorted(table.codes) if (s := table.by_code(c)) is not None),
    )


def directory() -> Directory:
    return _directory(get_settings().shared_data_dir)


def _catalog_access(caller: Caller, kind: str) -> None:
    p = caller.principal
    if p.role is Role.CLIENT and not allows(p.scopes, kind, False):
        raise FhirError.one(403, "forbidden", f"los scopes del cliente no cubren {kind}")
    if not p.may(Permission.FACILITY_READ):
        raise FhirError.one(
            403, "forbidden", f"el rol {p.role.value} no tiene el permiso facility:read"
        )


def _state_name(d: Directory, code: str) -> str | None:
    return next((s.name for s in d.states if s.code == code), None)


def _location(d: Directory, unit: HealthUnit) -> dict[str, Any]:
    return location(unit, _state_name(d, unit.state_code), d.by_clues.get(unit.institution_code))


def _coverages(
    person: Person, d: Directory, today: date | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The person's Coverages as on `today` (by default today in Mexico); with `since`, only
    those that changed after it (`mirror.coverage_updated`)."""
    today = today or today_mx()
    return [
        coverage(person.curp, e, d.by_dgis.get(e.institution_code), person.version,
                 person.updated_at, today)
        for e in map(Entitlement.of, person.affiliations)
        if since is None or coverage_updated(e, person.updated_at, today) > since
    ]  # fmt: skip


def coverages_for(
    caller: Caller, person: Person, today: date | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The person's Coverages for Patient/$everything and $export (as on `today`, changed
    after `since`), whose door (service.open_record) has checked the caller; a machine
    client sees them only with a scope for Coverage."""
    p = caller.principal
    if p.role is Role.CLIENT and not allows(p.scopes, "Coverage", False):
        return []
    return _coverages(person, directory(), today, since)


async def _related(session: AsyncSession, minor: Person) -> list[dict[str, Any]]:
    """Every link of this minor (ended ones included), as RelatedPersons, oldest first."""
    today = today_mx()
    return [
        related_person(Link.of(g), minor.birth_date, today)
        for g in await persons.guardianships(session, minor.curp)
    ]


async def related_for(
    session: AsyncSession, caller: Caller, person: Person
) -> list[dict[str, Any]]:
    """The person's RelatedPersons of the registry for Patient/$everything and $export, whose
    door has checked the caller; a machine client sees them only with a scope for the type."""
    p = caller.principal
    if p.role is Role.CLIENT and not allows(p.scopes, "RelatedPerson", False):
        return []
    return await _related(session, person)


def _not_found(kind: str, fhir_id: str) -> FhirError:
    return FhirError.one(404, "not-found", f"no existe {kind}/{fhir_id}")


async def read(
    session: AsyncSession, reader: FastReader, caller: Caller, kind: str, fhir_id: str,
    version_id: int | None, gate: Gate,
) -> Mirrored:  # fmt: skip
    """read (and vread of the current version: earlier ones live in the registry's and the
    catalog's own history, not here)."""
    d = directory()
    doc: dict[str, Any] | None = None
    if kind == "Coverage":
        doc = await _read_coverage(session, reader, caller, fhir_id, gate, d)
    elif kind == "RelatedPerson":
        doc = await _read_related(session, reader, caller, fhir_id, gate)
    else:
        _catalog_access(caller, kind)
        if kind == "Organization" and fhir_id in d.by_id:
            doc = organization(d.by_id[fhir_id], d.updated)
        elif kind == "Location" and (unit := await units.get(session, fhir_id)) is not None:
            doc = _location(d, unit)
    if doc is None:
        raise _not_found(kind, fhir_id)
    version = int(doc["meta"]["versionId"])
    if version_id is not None and version_id != version:
        raise FhirError.one(
            404, "not-found",
            f"{kind}/{fhir_id} se sirve solo en su versión actual ({version}): "
            "su historia está en el padrón o en el catálogo",
        )  # fmt: skip
    updated = datetime.fromisoformat(doc["meta"]["lastUpdated"].replace("Z", "+00:00"))
    return Mirrored(fhir_id, version, updated, orjson.dumps(doc).decode())


async def catalog_targets(
    session: AsyncSession, caller: Caller, targets: set[str]
) -> list[dict[str, Any]]:
    """The Organizations and Locations of the catalogs among these "Type/id" that the
    caller may read (what a record's entries point at: the institution that served, the
    unit), built as a read builds them; the others are left out, silently."""
    d = directory()
    out: list[dict[str, Any]] = []
    for target in sorted(targets):
        kind, _, fhir_id = target.partition("/")
        if kind not in ("Organization", "Location") or not owns(kind, fhir_id):
            continue
        try:
            _catalog_access(caller, kind)
        except FhirError:
            continue
        if kind == "Organization" and fhir_id in d.by_id:
            out.append(organization(d.by_id[fhir_id], d.updated))
        elif kind == "Location" and (unit := await units.get(session, fhir_id)) is not None:
            out.append(_location(d, unit))
    return out


async def _read_coverage(
    session: AsyncSession, reader: FastReader, caller: Caller, fhir_id: str, gate: Gate,
    d: Directory,
) -> dict[str, Any] | None:  # fmt: skip
    key = parse_coverage_id(fhir_id)
    if key is None:
        return None
    curp, action, subject = key[0], "records:Coverage:read", f"Coverage/{fhir_id}"
    who = await gate(reader, caller, Permission.PERSON_READ, action, "Coverage", curp, fhir_id)
    person = await persons.get_by_curp(session, curp)
    found = [c for c in (_coverages(person, d) if person else []) if c["id"] == fhir_id]
    outcome = "success" if found else "not_found"
    await who.record(action, "Coverage", person_curp=curp, subject_id=subject, outcome=outcome)
    return found[0] if found else None


async def _read_related(
    session: AsyncSession, reader: FastReader, caller: Caller, fhir_id: str, gate: Gate
) -> dict[str, Any] | None:
    key = parse_guardian_id(fhir_id)
    if key is None:
        return None
    curp, action = key[0], "records:RelatedPerson:read"
    who = await gate(reader, caller, Permission.PERSON_READ, action, "RelatedPerson", curp,
                     fhir_id)  # fmt: skip
    minor = await persons.get_by_curp(session, curp)
    found = [r for r in (await _related(session, minor) if minor else []) if r["id"] == fhir_id]
    await who.record(action, "RelatedPerson", person_curp=curp,
                     subject_id=f"RelatedPerson/{fhir_id}",
                     outcome="success" if found else "not_found")  # fmt: skip
    return found[0] if found else None


async def existing(session: AsyncSession, kind: str, ids: list[str]) -> set[str]:
    """Which of these ids of a mirrored type name something (referential integrity of
    writes): the mirror's own ids in the catalogs and the registry, others in the store."""
    owned = [i for i in ids if owns(kind, i)]
    others = sorted(set(ids) - set(owned))
    found = await repository.live_ids(session, kind, others) if others else set()
    if kind == "Organization":
        return found | (set(owned) & set(directory().by_id))
    if kind == "Location":  # (each query's IN list in slices: a bulk import names thousands)
        for part in repository.in_slices(owned):
            found |= await units.existing(session, list(part))
        return found
    if kind == "RelatedPerson":
        links = {i: g for i in owned if (g := parse_guardian_id(i)) is not None}
        for minor in sorted({g[0] for g in links.values()}):
            numbers = {g.id for g in await persons.guardianships(session, minor)}
            found |= {i for i, g in links.items() if g[0] == minor and g[1] in numbers}
        return found
    keys = {i: k for i in owned if (k := parse_coverage_id(i)) is not None}
    present: set[tuple[str, int, str | None]] = set()
    for part in repository.in_slices(sorted({k[0] for k in keys.values()})):
        present |= await persons.affiliation_keys(session, part)
    return found | {i for i, k in keys.items() if k in present}


# --- search ---------------------------------------------------------------------------------


async def search(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, kind: str,
    query: list[tuple[str, str]], gate: Gate,
) -> dict[str, Any]:  # fmt: skip
    """A searchset Bundle of a mirrored type, with paging links and the _include asked."""
    q = parse_query(kind, query)
    d = directory()
    included: list[dict[str, Any]] = []
    if kind == "Coverage":
        total, page, included = await _search_coverage(session, reader, caller, q, gate, d)
    elif kind == "RelatedPerson":
        total, page, included = await _search_related(session, reader, caller, q, gate)
    elif kind == "Organization":
        _catalog_access(caller, kind)
        matched = matching([organization(i, d.updated) for i in d.by_id.values()], q)
        total, page = len(matched), matched[q.offset : q.offset + q.count]
    else:
        _catalog_access(caller, kind)
        total, page = await _search_locations(session, q, d)
        if q.includes:
            _catalog_access(caller, "Organization")
            ids = sorted({r for doc in page if (r := _managing(doc)) is not None})
            included = [organization(d.by_id[i], d.updated) for i in ids]
    return searchset(base, kind, query, q, total, page, included)


def _institution(d: Directory, value: str) -> Institution | None:
    """The institution a reference search value names (`inst-2`, `Organization/inst-2`…)."""
    return d.by_id.get(reference_target(value, "Organization").removeprefix("Organization/"))


def _managing(doc: dict[str, Any]) -> str | None:
    ref = doc.get("managingOrganization", {}).get("reference")
    return ref.removeprefix("Organization/") if isinstance(ref, str) else None


def _one_person(q: Query) -> str:
    """The CURP a search of a person's mirrored data names (patient=, or beneficiary=)."""
    targets = {
        reference_target(v, "Patient")
        for p, _, values in q.terms
        if p in ("patient", "beneficiary")
        for v in values
    }
    if len(targets) != 1 or not next(iter(targets)).startswith("Patient/"):
        raise FhirError.one(
            400, "required",
            f"indique una persona: {q.kind}?patient=CURP (el expediente se consulta por persona)",
        )  # fmt: skip
    return next(iter(targets)).removeprefix("Patient/")


async def _person_search(
    session: AsyncSession, reader: FastReader, caller: Caller, q: Query, gate: Gate,
    docs: Callable[[Person], Coroutine[Any, Any, list[dict[str, Any]]]],
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """A search of one person's mirrored data (Coverage, RelatedPerson): permitted and audited
    as the person's, and the Patient, when included, as a Patient read of its own."""
    curp, kind = _one_person(q), q.kind
    action = f"records:{kind}:search"
    who = await gate(reader, caller, Permission.PERSON_READ, action, kind, curp, None)
    person = await persons.get_by_curp(session, curp)
    matched = matching(await docs(person), q) if person else []
    page = matched[q.offset : q.offset + q.count]
    await who.record(action, kind, person_curp=curp, detail={"total": len(matched)})
    included: list[dict[str, Any]] = []
    if (
        person is not None and page and {f"{kind}:patient", f"{kind}:beneficiary"} & set(q.includes)
    ):  # the Patient included is a Patient read: its own permission, scopes and audit entry
        read = "records:Patient:read"
        reading = await gate(reader, caller, Permission.PERSON_READ, read, "Patient", curp, curp)
        included.append(to_patient(person))
        await reading.record(read, "Patient", person_curp=curp, subject_id=f"Patient/{curp}")
    return len(matched), page, included


async def _search_related(
    session: AsyncSession, reader: FastReader, caller: Caller, q: Query, gate: Gate
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    return await _person_search(
        session, reader, caller, q, gate, lambda person: _related(session, person)
    )


async def _search_coverage(
    session: AsyncSession, reader: FastReader, caller: Caller, q: Query, gate: Gate,
    d: Directory,
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    async def docs(person: Person) -> list[dict[str, Any]]:
        return _coverages(person, d)

    total, page, included = await _person_search(session, reader, caller, q, gate, docs)
    if "Coverage:payor" in q.includes:
        _catalog_access(caller, "Organization")
        payors = {i.fhir_id: i for c in page for p in c["payor"] if (i := _payor(d, p))}
        included += [organization(payors[i], d.updated) for i in sorted(payors)]
    return total, page, included


def _payor(d: Directory, reference: dict[str, Any]) -> Institution | None:
    target = reference.get("reference")
    return _institution(d, target) if isinstance(target, str) else None


async def _search_locations(
    session: AsyncSession, q: Query, d: Directory
) -> tuple[int, list[dict[str, Any]]]:
    """The terms as filters of the catalog query: each occurrence narrows the set of keys,
    states, institutions or operation states (its comma-separated values widen it)."""
    clues: set[str] | None = None
    states: set[str] | None = None
    owners: set[str] | None = None
    operating: set[bool] | None = None
    names: list[tuple[str, str]] = []
    for param, modifier, values in q.terms:
        if param == "_id":
            clues = narrow(clues, set(values))
        elif param == "identifier":
            wanted = identifier_keys(values)
            if wanted is not None:
                clues = narrow(clues, wanted)
        elif param == "address-state":
            found = {
                s.code for s in d.states for v in values
                if v.upper() in (s.code, s.key) or string_match([s.name], v, modifier)
            }  # fmt: skip
            states = narrow(states, found)
        elif param == "organization":
            chosen = [_institution(d, v) for v in values]
            owners = narrow(owners, {i.clues_code for i in chosen if i and i.clues_code})
        elif param == "status":
            codes = {v.removeprefix(f"{LOCATION_STATUS}|") for v in values}
            operating = narrow(operating, {c == "active" for c in codes & {"active", "inactive"}})
        else:
            if len(values) > 1:
                raise FhirError.one(400, "not-supported", "Location admite un solo name", "name")
            names.append((modifier, values[0]))
    if len(names) > 1 or any(m == "exact" for m, _ in names):
        raise FhirError.one(
            400, "not-supported", "Location admite un solo name (o name:contains), sin :exact"
        )
    if operating == set() or clues == set() or states == set() or owners == set():
        return 0, []
    name_key = search_key(names[0][1]) if names else None
    found_units, total = await units.find(
        session, clues=clues, state_codes=states, institution_codes=owners,
        name_key=name_key, name_prefix=not names or names[0][0] != "contains",
        in_operation=None if operating is None or len(operating) == 2 else next(iter(operating)),
        limit=q.count, offset=q.offset,
    )  # fmt: skip
    return total, [_location(d, u) for u in found_units]
