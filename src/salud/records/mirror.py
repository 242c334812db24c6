"""Organization, Location, Coverage and RelatedPerson as mirrors of the system's own data
(FHIR R4).

- Organization: one per institution, from the DGIS AFILIACION catalog (id `inst-<code>`) and
  the CLUES institutions without a DGIS code (id `inst-<letters>`: SSA, DIF, Cruz Roja…).
- Location: the units of the CLUES catalog (id = the CLUES key).
- Coverage: the affiliations (derechohabiencia) of a registered person, id
  `<CURP>-<DGIS code>[-<member number>]` (the registry's own key of an affiliation).
- RelatedPerson: a minor's mother, father or guardian linked in the registry
  (identity/guardians.py), id `<minor's CURP>-tutor-<link number>`. Unlike the others, the
  type is also written by institutions (a next of kin, an emergency contact): only the
  mirror's own ids are read-only, and a search lists the registry's links only.

They are built from the registry and the catalogs when asked, never stored as FHIR
resources: there is one source of truth and nothing to keep in step. The FHIR API serves
them read-only; the registry (`/api/v1/persons`) and the catalog imports change them.

The mirror answers for its own ids (`owns`); any other id of these types names a resource
kept in the store, which only a bulk load puts there (the official examples' Organization/hl7,
say), or for RelatedPerson any write: it is read by id as any kept resource, and is not listed
by a search.

`meta.versionId` is the source's version (the registry's person for a Coverage, the CLUES
unit's for a Location, 1 for an institution and for a link in force, 2 for an ended one).
Some content changes with time alone, with no new version at the source: an active
affiliation past its end is a `cancelled` Coverage from the next day, and a link in force
stops being `active` on the minor's 18th birthday. The version then stays, and
`meta.lastUpdated` is when the content changed (the beginning of that day in central Mexico),
so `$export?_since=` and a client comparing `lastUpdated` see the change.

This module holds the pure builders; `mirror_query.py` the search parameters and their
matching (pure too); `mirrored.py` reads the data and applies the access rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from salud.facilities.hours import DAY_MINUTES, window
from salud.facilities.importers import CLUES_RE
from salud.facilities.models import HealthUnit
from salud.identity.catalogs import NON_INSTITUTION_CODES, AffiliationInstitution
from salud.identity.models import Affiliation, Guardianship
from salud.kit.ages import ADULT_AGE
from salud.kit.clock import MEXICO_CITY
from salud.records.indexing import fhir_instant
from salud.records.outcome import FhirError
from salud.records.patient import CURP_SYSTEM

KINDS = frozenset({"Coverage", "Location", "Organization", "RelatedPerson"})
# The mirrored types no one writes through FHIR (of RelatedPerson, only the mirror's own ids).
READ_ONLY = KINDS - {"RelatedPerson"}
CLUES_SYSTEM = "urn:oid:2.16.840.1.113883.4.631"  # CLUES (DGIS), as in the issue
DGIS_SYSTEM = "https://salud.gob.mx/fhir/sid/institucion-dgis"  # AFILIACION catalog code
CLUES_INSTITUTION_SYSTEM = "https://salud.gob.mx/fhir/sid/institucion-clues"  # IMS, SSA…
MEMBER_SYSTEM = "https://salud.gob.mx/fhir/sid/numero-afiliacion"  # + "/<DGIS code>"
LEVEL_SYSTEM = "https://salud.gob.mx/fhir/CodeSystem/nivel-atencion"
AFFILIATION_STATUS = "https://salud.gob.mx/fhir/StructureDefinition/estado-afiliacion"
_ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LEVELS = {1: "Primer nivel de atención", 2: "Segundo nivel de atención",
           3: "Tercer nivel de atención"}  # fmt: skip

# Where each type's data is changed (the 405 of a write says it).
_CHANGED_IN = {
    "Organization": "refleja los catálogos de instituciones (DGIS AFILIACION y CLUES), que se "
    "actualizan en la carpeta de catálogos compartidos (SALUD_SHARED_DATA_DIR)",
    "Location": "refleja el catálogo CLUES de unidades de salud, que se actualiza con "
    "`salud facilities import`",
    "Coverage": "refleja las afiliaciones (derechohabiencia) de la persona en el padrón, que "
    "se cambian con PATCH /api/v1/persons/{CURP}",
    "RelatedPerson": "este id refleja un vínculo de madre, padre o tutor de un menor en el "
    "padrón, que se hace al completar su registro en el módulo y se termina con "
    "POST /api/v1/persons/{CURP}/guardians/{CURP del adulto}/end",
}


def owns(kind: str, fhir_id: str) -> bool:
    """Whether this id of a mirrored type is the mirror's to answer."""
    if kind == "Organization":
        return fhir_id.startswith("inst-")
    if kind == "Location":
        return CLUES_RE.fullmatch(fhir_id) is not None
    if kind == "RelatedPerson":
        return parse_guardian_id(fhir_id) is not None
    return kind == "Coverage" and parse_coverage_id(fhir_id) is not None


def read_only(kind: str) -> FhirError:
    """The refusal of a write (405: the type is read-only here), naming where to change it."""
    return FhirError.one(
        405, "not-supported", f"{kind} es de solo lectura en FHIR: {_CHANGED_IN[kind]}"
    )


_HISTORY_IN = {
    "Organization": "en los catálogos de instituciones",
    "Location": "en el catálogo: GET /api/v1/facilities/{CLUES}/history",
    "Coverage": "en el padrón: GET /api/v1/persons/{CURP}/history",
    "RelatedPerson": "en el padrón: GET /api/v1/persons/{CURP}/guardians",
}


def no_history(kind: str) -> FhirError:
    return FhirError.one(
        400, "not-supported",
        f"{kind} refleja datos del sistema y no tiene historia en FHIR; está {_HISTORY_IN[kind]}",
    )  # fmt: skip


def refuse_write(kind: str, fhir_id: str | None = None) -> None:
    """405 for a write of a read-only type, or of an id the mirror answers for."""
    if kind in READ_ONLY or (fhir_id is not None and kind in KINDS and owns(kind, fhir_id)):
        raise read_only(kind)


def _meta(version: int, updated: datetime) -> dict[str, str]:
    return {"versionId": str(version), "lastUpdated": fhir_instant(updated)}


# --- Organization ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Institution:
    fhir_id: str
    name: str
    aliases: tuple[str, ...]
    dgis_code: int | None
    clues_code: str | None
    active: bool


def institutions(
    dgis: Mapping[int, AffiliationInstitution],
    clues: Mapping[str, str],
    same: Mapping[str, int],
) -> list[Institution]:
    """One entry per institution: every DGIS AFILIACION code that names one (with its CLUES
    letters when it has units), then the CLUES institutions without a DGIS code. `same`
    maps CLUES letters to the DGIS code of the same institution."""
    letters_of = {code: letters for letters, code in same.items() if letters in clues}
    out: list[Institution] = []
    for code, entry in sorted(dgis.items()):
        if code in NON_INSTITUTION_CODES:
            continue
        letters = letters_of.get(code)
        name = clues[letters] if letters else entry.long_name
        aliases = tuple(
            dict.fromkeys(
                a for a in (entry.short_name, entry.long_name, letters) if a and a != name
            )
        )
        out.append(Institution(f"inst-{code}", name, aliases, code, letters, entry.active))
    taken = set(letters_of.values())
    for letters, name in sorted(clues.items()):
        if letters not in taken:
            out.append(Institution(f"inst-{letters}", name, (letters,), None, letters, True))
    return out


def organization(inst: Institution, updated: datetime) -> dict[str, Any]:
    identifier: list[dict[str, Any]] = []
    kinds: list[tuple[str, str]] = []
    if inst.dgis_code is not None:  # it has affiliates: it pays for their care
        identifier.append({"use": "official", "system": DGIS_SYSTEM, "value": str(inst.dgis_code)})
        kinds.append(("pay", "Payer"))
    if inst.clues_code is not None:  # it has units in the CLUES catalog
        identifier.append({"system": CLUES_INSTITUTION_SYSTEM, "value": inst.clues_code})
        kinds.append(("prov", "Healthcare Provider"))
    doc: dict[str, Any] = {
        "resourceType": "Organization", "id": inst.fhir_id, "meta": _meta(1, updated),
        "identifier": identifier, "active": inst.active,
        "type": [{"coding": [{"system": _ORG_TYPE, "code": c, "display": d}]} for c, d in kinds],
        "name": inst.name,
    }  # fmt: skip
    if inst.aliases:
        doc["alias"] = list(inst.aliases)
    return doc


# --- Location -------------------------------------------------------------------------------


def _time(minute: int) -> str:
    """A FHIR time; the end of the day (24:00, which FHIR cannot write) is 23:59:59."""
    if minute >= DAY_MINUTES:
        return "23:59:59"
    return f"{minute // 60:02d}:{minute % 60:02d}:00"


def hours_of_operation(hours: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """(Location.hoursOfOperation, notes) from the catalog's hours (facilities/hours.py):
    one opening and one closing time for the days it names. Without the days the times go
    to the notes only: hoursOfOperation without daysOfWeek would say nothing definite."""
    if not hours or not hours.get("open") or not hours.get("close"):
        return [], []
    start, end = window(hours["open"], hours["close"])
    notes: list[str] = []
    days = hours.get("days")
    if days is None:
        notes.append(f"De {hours['open']} a {hours['close']}; el catálogo no indica los días")
    blocks = hours.get("blocks")
    if isinstance(blocks, int) and blocks > 1:
        notes.append(
            f"Horario en {blocks} bloques: de la primera apertura al último cierre, "
            "puede haber recesos"
        )
    open_days = [code for code, is_open in zip(_DAYS, days or [], strict=False) if is_open]
    if not open_days:
        return [], notes
    slot: dict[str, Any] = {"daysOfWeek": open_days}
    if start == 0 and end >= DAY_MINUTES:
        slot["allDay"] = True
    else:
        slot["openingTime"], slot["closingTime"] = _time(start), _time(end)
        if end < start:
            notes.append("Cierra después de la medianoche (turno que empieza el día indicado)")
    return [slot], notes


def location(
    unit: HealthUnit, state_name: str | None, managing: Institution | None
) -> dict[str, Any]:
    """A CLUES unit as a Location: active when in operation, address by INEGI names,
    position (WGS84), the managing institution, type and level of care, hours."""
    doc: dict[str, Any] = {
        "resourceType": "Location", "id": unit.clues, "meta": _meta(unit.version, unit.updated_at),
        "identifier": [{"use": "official", "system": CLUES_SYSTEM, "value": unit.clues}],
    }  # fmt: skip
    if unit.in_operation is not None:
        doc["status"] = "active" if unit.in_operation else "inactive"
    doc["name"] = unit.name
    if unit.location_note:
        doc["description"] = unit.location_note
    doc["mode"] = "instance"
    kinds: list[dict[str, Any]] = []
    if unit.unit_type:
        kinds.append({"text": unit.unit_type})
    if unit.level_of_care in _LEVELS:
        display = _LEVELS[unit.level_of_care]
        coding = {"system": LEVEL_SYSTEM, "code": str(unit.level_of_care), "display": display}
        kinds.append({"coding": [coding], "text": display})
    if kinds:
        doc["type"] = kinds
    address: dict[str, Any] = {"use": "work", "type": "physical"}
    if unit.street:
        address["line"] = [unit.street]
    for key, value in (
        ("city", unit.locality_name), ("district", unit.municipality_name),
        ("state", state_name), ("postalCode", unit.postal_code),
    ):  # fmt: skip
        if value:
            address[key] = value
    address["country"] = "MX"
    doc["address"] = address
    if unit.latitude is not None and unit.longitude is not None:
        doc["position"] = {"longitude": unit.longitude, "latitude": unit.latitude}
    if managing is not None:
        doc["managingOrganization"] = {
            "reference": f"Organization/{managing.fhir_id}",
            "display": managing.name,
        }
    elif unit.institution_name:  # an institution no catalog names: said, not referred to
        doc["managingOrganization"] = {"display": unit.institution_name}
    slots, notes = hours_of_operation(unit.hours)
    if slots:
        doc["hoursOfOperation"] = slots
    if notes:
        doc["availabilityExceptions"] = "; ".join(notes)
    return doc


# --- Coverage -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entitlement:
    """An affiliation's values (identity/models.py Affiliation)."""

    institution_code: int
    member_number: str | None
    regime: str | None
    valid_from: date
    valid_to: date | None
    status: str  # active | suspended | ended

    @classmethod
    def of(cls, a: Affiliation) -> Entitlement:
        return cls(a.institution_code, a.member_number, a.regime, a.valid_from, a.valid_to,
                   a.status)  # fmt: skip


def coverage_id(curp: str, institution_code: int, member_number: str | None) -> str:
    """The registry keeps one affiliation per (institution, member number): that is the id.
    A member number's "/" (allowed there, not in a FHIR id) is written "." (not allowed
    there), so the id reads back to the same key."""
    base = f"{curp}-{institution_code}"
    return f"{base}-{member_number.replace('/', '.')}" if member_number else base


def parse_coverage_id(fhir_id: str) -> tuple[str, int, str | None] | None:
    """(CURP, DGIS code, member number) of a Coverage id, or None if it is not one."""
    curp, dash, rest = fhir_id[:18], fhir_id[18:19], fhir_id[19:]
    if dash != "-" or not (curp.isascii() and curp.isalnum() and curp.isupper()):
        return None
    code, _, member = rest.partition("-")
    if not (code.isascii() and code.isdigit()) or len(code) > 4:
        return None
    key = (curp, int(code), member.replace(".", "/") or None)
    return key if coverage_id(*key) == fhir_id else None


def coverage_status(status: str, valid_to: date | None, today: date) -> str:
    """FHIR Coverage.status (financial resource status): active while the affiliation is
    active and not past its end; cancelled once suspended, ended or expired."""
    return (
        "active" if status == "active" and (valid_to is None or valid_to >= today) else "cancelled"
    )


def day_starts(day: date) -> datetime:
    """The moment a civil day begins in central Mexico (where validity is counted), in UTC."""
    return datetime.combine(day, time.min, MEXICO_CITY).astimezone(UTC)


def coverage_updated(e: Entitlement, updated: datetime, today: date) -> datetime:
    """When a Coverage last changed: the registry's last change of the person (`updated`), or
    later, the day after its end, when an active affiliation past `valid_to` turned
    `cancelled` with no change in the registry (time alone changed it)."""
    if e.status == "active" and e.valid_to is not None and e.valid_to < today:
        return max(updated, day_starts(e.valid_to + timedelta(days=1)))
    return updated


def coverage(
    curp: str, e: Entitlement, payor: Institution | None, version: int, updated: datetime,
    today: date,
) -> dict[str, Any]:  # fmt: skip
    """`version` and `updated`: the registry's person's. The version stays the registry's when
    time alone changes the content (an affiliation past its end); `lastUpdated` says when."""
    doc: dict[str, Any] = {
        "resourceType": "Coverage",
        "id": coverage_id(curp, e.institution_code, e.member_number),
        "meta": _meta(version, coverage_updated(e, updated, today)),
        # The registry's own status, which FHIR's active/cancelled cannot tell apart.
        "extension": [{"url": AFFILIATION_STATUS, "valueCode": e.status}],
    }
    if e.member_number:
        doc["identifier"] = [{
            "type": {"coding": [{"system": _V2_0203, "code": "MB", "display": "Member Number"}]},
            "system": f"{MEMBER_SYSTEM}/{e.institution_code}", "value": e.member_number,
        }]  # fmt: skip
    doc["status"] = coverage_status(e.status, e.valid_to, today)
    doc["type"] = {
        "coding": [{"system": _ACT_CODE, "code": "PUBLICPOL", "display": "public healthcare"}],
        "text": "Seguridad social / servicios públicos de salud",
    }
    if e.member_number:
        doc["subscriberId"] = e.member_number
    doc["beneficiary"] = {"reference": f"Patient/{curp}"}
    period = {"start": e.valid_from.isoformat()}
    if e.valid_to is not None:
        period["end"] = e.valid_to.isoformat()
    doc["period"] = period
    doc["payor"] = [
        {"reference": f"Organization/{payor.fhir_id}", "display": payor.name}
        if payor is not None
        else {"identifier": {"system": DGIS_SYSTEM, "value": str(e.institution_code)}}
    ]
    if e.regime:
        plan = {"coding": [{"system": _COVERAGE_CLASS, "code": "plan", "display": "Plan"}]}
        doc["class"] = [{"type": plan, "value": e.regime, "name": e.regime}]
    return doc


# --- RelatedPerson --------------------------------------------------------------------------

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
# The registry's relationship -> (v3 RoleCode, its display, the Spanish text)
_ROLES = {
    "mother": ("MTH", "mother", "madre"),
    "father": ("FTH", "father", "padre"),
    "guardian": ("GUARD", "guardian", "tutor"),
}
_GUARDIAN_SEP = "-tutor-"


@dataclass(frozen=True, slots=True)
class Link:
    """A guardianship's values (identity/models.py Guardianship)."""

    number: int
    minor_curp: str
    guardian_curp: str
    relationship: str
    linked_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, g: Guardianship) -> Link:
        return cls(g.id, g.minor_curp, g.guardian_curp, g.relationship, g.linked_at, g.ended_at)


def guardian_id(minor_curp: str, number: int) -> str:
    return f"{minor_curp}{_GUARDIAN_SEP}{number}"


def parse_guardian_id(fhir_id: str) -> tuple[str, int] | None:
    """(minor's CURP, link number) of a RelatedPerson id of the mirror, or None."""
    curp, sep, number = fhir_id[:18], fhir_id[18:25], fhir_id[25:]
    if sep != _GUARDIAN_SEP or not (curp.isascii() and curp.isalnum() and curp.isupper()):
        return None
    if not (number.isascii() and number.isdigit()) or len(number) > 18:
        return None
    key = (curp, int(number))
    return key if guardian_id(*key) == fhir_id else None


def coming_of_age(birth: date) -> date:
    """The day a minor turns 18 (born on 29 February: 1 March, as kit/ages counts)."""
    try:
        return birth.replace(year=birth.year + ADULT_AGE)
    except ValueError:
        return date(birth.year + ADULT_AGE, 3, 1)


def related_person(link: Link, minor_birth: date, today: date) -> dict[str, Any]:
    """The adult who answers for a minor: their CURP (what their ID showed at the module,
    not their registry entry), the relationship, and the link's period: until it was ended,
    or until the minor comes of age. An ended link is the link's second version. A link in
    force turns inactive on the minor's 18th birthday, by time alone: the version stays 1 and
    `lastUpdated` is that day's beginning (in central Mexico)."""
    majority = coming_of_age(minor_birth)
    ended = link.ended_at
    code, display, text = _ROLES[link.relationship]
    changed = ended or link.linked_at
    if ended is None and today >= majority:
        changed = max(changed, day_starts(majority))
    return {
        "resourceType": "RelatedPerson",
        "id": guardian_id(link.minor_curp, link.number),
        "meta": _meta(1 if ended is None else 2, changed),
        "identifier": [{"use": "official", "system": CURP_SYSTEM, "value": link.guardian_curp}],
        "active": ended is None and today < majority,
        "patient": {"reference": f"Patient/{link.minor_curp}"},
        "relationship": [
            {"coding": [{"system": ROLE_CODE, "code": code, "display": display}], "text": text}
        ],
        # Ends when the link was ended or the minor came of age, whichever came first, as an
        # instant: a date alone would include the whole birthday, when `active` is false.
        "period": {
            "start": fhir_instant(link.linked_at),
            "end": fhir_instant(
                min(ended, day_starts(majority)) if ended else day_starts(majority)
            ),
        },
    }
