"""Patient search: the registry's persons as FHIR Patients (`GET /fhir/Patient?…`).

A search finds people the way the registry's own search does, never a list of everybody:
it names the person (`_id` or `identifier`: the CURP), or their first surname and birth date
(`family` with `birthdate`), optionally narrowed by `given` and `gender`. Every query is a
selective index look-up (the CURP's unique index, or surnames and birth date), so no value
lets a caller walk the registry.

- `_id`, `identifier`: one or more CURPs (comma-separated alternatives, at most 50). An
  `identifier` with a system other than the CURP's matches nothing (the registry's Patients
  carry only the CURP; a Patient kept outside the registry is found by `_id` only);
  `system|` alone (every value of the system) is refused; a malformed CURP is refused naming
  the reason. An `_id` that is no CURP may name a Patient kept outside the registry (a bulk
  load), as a read does.
- `family`: starts with the first surname, complete (the registry indexes first surnames
  whole, "De la Cruz" included), ignoring case and accents; `given`: any given name starts
  with it; `birthdate`: one full date (`1990-05-17` or `eq1990-05-17`; a range would
  enumerate); `gender`: `male`, `female`, `other`, `unknown`.

Who may search: PERSON_SEARCH (staff who identify people; a machine client with
`system/Patient.read`). A match is a read of that person's Patient: a clinician sees only the
persons they have a basis for (care, consent, emergency), as in a read; the others are
withheld (counted in the audit entry, not listed). Audit: one entry for the search
(`records:Patient:search`, how many matched and how many were withheld) and one per person
whose Patient was disclosed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import care
from salud.access.context import Caller
from salud.access.permissions import Permission, Role
from salud.access.scopes import allows
from salud.identity import curp as curp_rules
from salud.identity import repository as persons
from salud.kit import exactjson
from salud.kit.text import search_key
from salud.records import repository
from salud.records.compartment import MAX_PATIENT_ID
from salud.records.mirror_query import (
    DEFAULT_COUNT,
    MAX_COUNT,
    MAX_OFFSET,
    Query,
    searchset,
    string_match,
)
from salud.records.outcome import FhirError, bounded_int
from salud.records.patient import CURP_SYSTEM, to_patient
from salud.storage.fastread import FastReader

_T = TypeVar("_T")
ACTION = "records:Patient:search"
PARAMS: dict[str, str] = {
    "_id": "token", "identifier": "token", "family": "string", "given": "string",
    "birthdate": "date", "gender": "token",
}  # fmt: skip
_CONTROL = frozenset({"_count", "_offset", "_format"})
GENDERS = frozenset({"male", "female", "other", "unknown"})
MAX_IDS = 50  # CURPs one search may name
MAX_MATCHES = 1000  # persons a surname and birth date may match before the search must narrow
_DAY = re.compile(r"(?:eq)?(\d{4}-\d{2}-\d{2})")
DOCUMENTATION = (
    "El Patient es la persona del padrón (id = CURP); solo lectura. Búsqueda: por la CURP "
    "(_id o identifier con el sistema urn:oid:2.16.840.1.113883.4.629), o por family (el "
    "primer apellido completo, sin distinguir mayúsculas ni acentos) con birthdate (una "
    "fecha completa), y además given (inicio de un nombre) y gender. Un clínico solo ve a "
    "las personas con quienes tiene relación de atención, consentimiento o acceso de "
    "emergencia. Cada búsqueda y cada persona mostrada quedan en la bitácora."
)


@dataclass
class Asked:
    """A Patient search as parsed: what selects the candidates and what narrows them."""

    count: int = DEFAULT_COUNT
    offset: int = 0
    ids: set[str] | None = None  # CURPs (or ids of Patients kept outside the registry)
    family: str | None = None  # its search key
    birthdate: date | None = None
    given: list[tuple[str, ...]] = field(default_factory=list)  # each occurrence must hold
    genders: list[frozenset[str]] = field(default_factory=list)


def parse(query: list[tuple[str, str]]) -> Asked:
    """The query, or a 400 naming the parameter: unknown ones, malformed values, and a
    search that names neither the person nor their surname and birth date."""
    unknown = sorted({n for n, _ in query if n not in PARAMS and n not in _CONTROL})
    if unknown:
        raise FhirError.one(
            400, "not-supported",
            f"parámetros de búsqueda no admitidos para Patient: {', '.join(unknown)} "
            f"(admitidos: {', '.join(sorted(set(PARAMS) | _CONTROL))})",
        )  # fmt: skip
    asked = Asked()
    for name, raw in query:
        if name == "_count":
            asked.count = bounded_int(raw, name, 1, MAX_COUNT)
        elif name == "_offset":
            asked.offset = bounded_int(raw, name, 0, MAX_OFFSET)
        elif name == "_format":
            continue
        elif any(not v.strip() for v in raw.split(",")):
            raise FhirError.one(400, "invalid", f"{name}: falta el valor", name)
        elif name in ("_id", "identifier"):
            ids = _ids(name, raw)
            asked.ids = ids if asked.ids is None else asked.ids & ids
        elif name == "family":
            asked.family = _single(asked.family, name, search_key(raw))
        elif name == "birthdate":
            asked.birthdate = _single(asked.birthdate, name, _day(raw))
        elif name == "given":
            asked.given.append(tuple(raw.split(",")))
        else:  # gender
            genders = frozenset(raw.split(","))
            if not genders <= GENDERS:
                raise FhirError.one(
                    400, "invalid",
                    f"gender: «{raw}» no es un valor de Patient.gender "
                    f"({', '.join(sorted(GENDERS))})",
                    name,
                )  # fmt: skip
            asked.genders.append(genders)
    if asked.ids is None and (asked.family is None or asked.birthdate is None):
        raise FhirError.one(
            400, "required",
            "indique la persona: _id o identifier (la CURP), o family (primer apellido) con "
            "birthdate (fecha de nacimiento)",
        )  # fmt: skip
    if asked.family is not None and not asked.family:
        raise FhirError.one(400, "invalid", "family: no tiene letras", "family")
    return asked


def _single(current: _T | None, name: str, value: _T) -> _T:
    if current is not None:
        raise FhirError.one(400, "invalid", f"{name}: se admite una sola vez", name)
    return value


def _ids(name: str, raw: str) -> set[str]:
    values = raw.split(",")
    if len(values) > MAX_IDS:
        raise FhirError.one(400, "invalid", f"{name}: a lo más {MAX_IDS} valores", name)
    ids: set[str] = set()
    for value in values:
        if name == "_id":
            if len(value) > 64:
                raise FhirError.one(400, "invalid", f"_id: «{value[:70]}» no es un id FHIR", name)
            ids.add(value)
            continue
        system, bar, code = value.rpartition("|")
        if bar and not code:
            raise FhirError.one(
                400, "invalid", f"{name}: indique el valor del identificador, no solo el sistema",
                name,
            )  # fmt: skip
        if bar and system != CURP_SYSTEM:
            continue  # another system, or none (`|code`): no Patient here carries it
        try:
            curp_rules.validate(code)
        except curp_rules.CurpInvalid as exc:
            raise FhirError.one(
                400, "invalid", f"{name}: «{code}» no es una CURP válida: {exc.reason}", name
            ) from None
        ids.add(code)
    return ids


def _day(raw: str) -> date:
    match = _DAY.fullmatch(raw)
    try:
        if match is None:
            raise ValueError
        return date.fromisoformat(match.group(1))
    except ValueError:
        raise FhirError.one(
            400, "invalid",
            f"birthdate: «{raw}» debe ser una fecha completa (AAAA-MM-DD, o eqAAAA-MM-DD)",
            "birthdate",
        ) from None  # fmt: skip


def holds(doc: dict[str, Any], asked: Asked) -> bool:
    """Whether a Patient meets the narrowing terms (the selecting ones were the query's)."""
    name = doc["name"][0] if doc.get("name") else {}
    if asked.family is not None:
        family = search_key(name.get("family") or "")
        if not (family == asked.family or family.startswith(f"{asked.family} ")):
            return False
    given = list(name.get("given") or [])
    for alternatives in asked.given:
        if not any(string_match([*given, " ".join(given)], v, "") for v in alternatives):
            return False
    if asked.birthdate is not None and doc.get("birthDate") != asked.birthdate.isoformat():
        return False
    return all(doc.get("gender", "unknown") in genders for genders in asked.genders)


async def _candidates(
    session: AsyncSession, reader: FastReader, asked: Asked
) -> list[dict[str, Any]]:
    if asked.ids is not None:
        if not asked.ids:
            return []
        found = await persons.by_curps(session, sorted(asked.ids))
        docs = [to_patient(p) for p in found]
        for other in sorted(asked.ids - {p.curp for p in found}):
            if len(other) > MAX_PATIENT_ID:
                continue
            kept = await repository.current_fast(reader, "Patient", other)
            if kept is not None and not kept["deleted"]:
                docs.append(exactjson.loads(kept["content"]))
        return docs
    assert asked.family is not None
    assert asked.birthdate is not None
    # The registry keeps the first surname whole ("DE LA CRUZ"); FHIR's family holds both
    # surnames. Every leading run of words may be the first surname: one indexed IN.
    words = asked.family.split(" ")
    firsts = [" ".join(words[: i + 1]) for i in range(len(words))]
    found = await persons.search(
        session, curp=None, first_surname_key=firsts,
        given_names_key=None, birth_date=asked.birthdate, birth_state=None,
        address_state=None, after_id=0, limit=MAX_MATCHES + 1,
    )  # fmt: skip
    if len(found) > MAX_MATCHES:
        raise FhirError.one(
            400, "too-costly",
            f"más de {MAX_MATCHES} personas con ese apellido y fecha: precise con given",
        )  # fmt: skip
    return [to_patient(p) for p in found]


async def search(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str,
    query: list[tuple[str, str]],
) -> dict[str, Any]:  # fmt: skip
    """A searchset Bundle of Patients, with paging links."""
    p = caller.principal
    if p.role is Role.CLIENT and not allows(p.scopes, "Patient", False):
        await caller.record(ACTION, "Patient", outcome="denied")
        raise FhirError.one(403, "forbidden", "los scopes del cliente no cubren Patient")
    await caller.allow(Permission.PERSON_SEARCH, ACTION, "Patient")
    asked = parse(query)
    matched = sorted(
        (d for d in await _candidates(session, reader, asked) if holds(d, asked)),
        key=lambda d: str(d["id"]),
    )
    visible = matched
    bases: dict[str, tuple[str, str | None] | None] = {}
    if care.needs_basis(p):
        bases = await care.clinical_bases(reader, p, [str(d["id"]) for d in matched])
        visible = [d for d in matched if bases.get(str(d["id"])) is not None]
    page = visible[asked.offset : asked.offset + asked.count]
    await caller.record(
        ACTION, "Patient", detail={"total": len(visible), "withheld": len(matched) - len(visible)}
    )
    if care.needs_basis(p):  # each person's entry says on which basis they were shown
        await care.record_shown(caller, ACTION, (str(d["id"]) for d in page), bases)
    else:
        await caller.record_persons(ACTION, [d["id"] for d in page])
    q = Query("Patient", asked.count, asked.offset)
    return searchset(base, "Patient", query, q, len(visible), page, [])


def capability() -> dict[str, Any]:
    """The CapabilityStatement.rest.resource entry of Patient."""
    return {
        "type": "Patient",
        "profile": "http://hl7.org/fhir/StructureDefinition/Patient",
        "documentation": DOCUMENTATION,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": n, "type": t} for n, t in sorted(PARAMS.items())],
    }
