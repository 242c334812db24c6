"""Search parameters: what each resource type can be searched by, and the index values
extracted from a resource (FHIR R4 §3.1.1 search; the parameter names are R4's own).

Pure functions over the resource as a dict: the FHIR store writes their output into the
token, reference and date index tables, and the search translates queries onto them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from salud.records.outcome import FhirError

Kind = Literal["token", "reference", "date"]
FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
FAR_PAST = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Param:
    kind: Kind
    paths: tuple[str, ...]  # element names from the resource root; "[x]" = choice type


def _p(kind: Kind, *paths: str) -> Param:
    return Param(kind, paths)


_SUBJECT = _p("reference", "subject")  # `patient` keeps only its Patient references
# Per type: parameter -> where its values are. `patient` only matches Patient references.
PARAMS: dict[str, dict[str, Param]] = {
    "Encounter": {
        "patient": _SUBJECT, "subject": _SUBJECT, "status": _p("token", "status"),
        "date": _p("date", "period"), "class": _p("token", "class"),
        "type": _p("token", "type"),
    },
    "Condition": {
        "patient": _SUBJECT, "subject": _SUBJECT, "code": _p("token", "code"),
        "category": _p("token", "category"),
        "clinical-status": _p("token", "clinicalStatus"),
        "verification-status": _p("token", "verificationStatus"),
        "onset-date": _p("date", "onset[x]"), "recorded-date": _p("date", "recordedDate"),
        "encounter": _p("reference", "encounter"),
    },
    "AllergyIntolerance": {
        "patient": _p("reference", "patient"), "code": _p("token", "code"),
        "category": _p("token", "category"),
        "clinical-status": _p("token", "clinicalStatus"),
        "criticality": _p("token", "criticality"), "date": _p("date", "recordedDate"),
    },
    "MedicationRequest": {
        "patient": _SUBJECT, "subject": _SUBJECT,
        "code": _p("token", "medicationCodeableConcept"), "status": _p("token", "status"),
        "category": _p("token", "category"), "intent": _p("token", "intent"),
        "authoredon": _p("date", "authoredOn"), "encounter": _p("reference", "encounter"),
    },
    "MedicationStatement": {
        "patient": _SUBJECT, "subject": _SUBJECT,
        "code": _p("token", "medicationCodeableConcept"), "status": _p("token", "status"),
        "category": _p("token", "category"), "effective": _p("date", "effective[x]"),
    },
    "Observation": {
        "patient": _SUBJECT, "subject": _SUBJECT, "code": _p("token", "code"),
        "status": _p("token", "status"), "category": _p("token", "category"),
        "date": _p("date", "effective[x]"), "encounter": _p("reference", "encounter"),
    },
    "DiagnosticReport": {
        "patient": _SUBJECT, "subject": _SUBJECT, "code": _p("token", "code"),
        "status": _p("token", "status"), "category": _p("token", "category"),
        "date": _p("date", "effective[x]"), "encounter": _p("reference", "encounter"),
    },
    "Procedure": {
        "patient": _SUBJECT, "subject": _SUBJECT, "code": _p("token", "code"),
        "status": _p("token", "status"), "category": _p("token", "category"),
        "date": _p("date", "performed[x]"), "encounter": _p("reference", "encounter"),
    },
    "Immunization": {
        "patient": _p("reference", "patient"), "vaccine-code": _p("token", "vaccineCode"),
        "status": _p("token", "status"), "date": _p("date", "occurrence[x]"),
    },
    "DocumentReference": {
        "patient": _SUBJECT, "subject": _SUBJECT, "type": _p("token", "type"),
        "status": _p("token", "status"), "category": _p("token", "category"),
        "date": _p("date", "date"),
    },
    "Coverage": {
        "patient": _p("reference", "beneficiary"), "beneficiary": _p("reference", "beneficiary"),
        "status": _p("token", "status"), "type": _p("token", "type"),
    },
    "Appointment": {
        "patient": _p("reference", "participant.actor"), "status": _p("token", "status"),
        "date": _p("date", "start"),
    },
    "Consent": {
        "patient": _p("reference", "patient"), "status": _p("token", "status"),
        "category": _p("token", "category"), "date": _p("date", "dateTime"),
    },
    "Organization": {"type": _p("token", "type")},
    "Location": {
        "status": _p("token", "status"),
        "organization": _p("reference", "managingOrganization"),
    },
    "Practitioner": {},
    "PractitionerRole": {
        "practitioner": _p("reference", "practitioner"),
        "organization": _p("reference", "organization"), "role": _p("token", "code"),
    },
}  # fmt: skip
for _params in PARAMS.values():
    _params["identifier"] = _p("token", "identifier")

# Where a resource names its patient (the person it belongs to), by type.
PATIENT_PATH: dict[str, str] = {
    t: p["patient"].paths[0] for t, p in PARAMS.items() if "patient" in p
}


@dataclass(frozen=True, slots=True)
class SortKey:
    """One key of `_sort` (R4 §3.1.1.5.4): a search parameter of the type, `_id` or
    `_lastUpdated`, ascending unless written with a leading `-`."""

    param: str
    kind: Literal["token", "reference", "date", "_id", "_lastUpdated"]
    descending: bool


DEFAULT_SORT: tuple[SortKey, ...] = (SortKey("_lastUpdated", "_lastUpdated", True),)


def sort_keys(raw: str, params: dict[str, Param]) -> tuple[SortKey, ...]:
    """`_sort=status,-date`: the keys in order, or a 400 naming what cannot be sorted by."""
    keys: list[SortKey] = []
    for item in raw.split(","):
        name = item[1:] if item.startswith("-") else item
        if name in ("_id", "_lastUpdated"):
            kind: Any = name
        elif name in params:
            kind = params[name].kind
        else:
            allowed = ", ".join(sorted({"_id", "_lastUpdated", *params}))
            raise FhirError.one(
                400, "not-supported",
                f"_sort: «{item}» no es un parámetro de este tipo (admitidos: {allowed}; "
                "«-» delante para orden descendente)", "_sort",
            )  # fmt: skip
        if any(k.param == name for k in keys):
            raise FhirError.one(400, "invalid", f"_sort: «{name}» aparece dos veces", "_sort")
        keys.append(SortKey(name, kind, item.startswith("-")))
    return tuple(keys)


# The choice types a date parameter indexes (R4 search parameters such as onset-date are
# `onset.as(dateTime) | onset.as(Period)`: an onsetString or onsetAge is not a date).
_DATE_CHOICES = ("DateTime", "Period", "Instant", "Date")


def _values(node: Any, path: str, choices: tuple[str, ...] | None = None) -> Iterator[Any]:
    """Every value at a dotted path; lists are walked; `name[x]` tries every choice (or
    only those whose type is in `choices`)."""
    head, _, rest = path.partition(".")
    nodes = node if isinstance(node, list) else [node]
    for item in nodes:
        if not isinstance(item, dict):
            continue
        if head.endswith("[x]"):
            stem = head[:-3]
            found = [
                v
                for k, v in item.items()
                if k.startswith(stem)
                and k[len(stem) :][:1].isupper()
                and (choices is None or k[len(stem) :] in choices)
            ]
        else:
            found = [item[head]] if head in item else []
        for value in found:
            if rest:
                yield from _values(value, rest, choices)
            elif isinstance(value, list):
                yield from value
            else:
                yield value


def tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    """(system, code) pairs of a code, Coding, CodeableConcept or Identifier."""
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, dict) and coding.get("code"):
                    yield coding.get("system"), str(coding["code"])
        elif "code" in value:
            yield value.get("system"), str(value["code"])
        elif "value" in value and isinstance(value["value"], str):
            yield value.get("system"), value["value"]


def reference(value: Any) -> str | None:
    """ "Type/id" of a literal relative reference (absolute URLs and contained: None)."""
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    if not isinstance(ref, str) or ref.startswith("#") or "://" in ref:
        return None
    parts = ref.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts = parts[:2]
    return "/".join(parts) if len(parts) == 2 and all(parts) else None


# FHIR's date, dateTime and instant grammar (ASCII digits; a time needs hours and minutes;
# seconds may be the leap second 60), loose only where a search value may stop early.
_DATE = re.compile(
    r"[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)

_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                      r"(Z|[+-][0-9]{2}:[0-9]{2})")  # fmt: skip


def fhir_instant(moment: datetime) -> str:
    """A moment as a FHIR instant, to the millisecond, in UTC written "Z"."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_instant(text: str) -> bool:
    """A FHIR instant: date, time to the second and the zone."""
    return _INSTANT.fullmatch(text) is not None


def instant_param(raw: str, name: str) -> datetime:
    """A query parameter that must be a FHIR instant (`_since` of history and `$export`): the
    moment in UTC, or a 400 naming the parameter."""
    try:
        if not is_instant(raw):  # a time with its zone: a date alone is not a moment
            raise ValueError(raw)
        moment = interval(raw)[0]
    except ValueError:
        raise FhirError.one(
            400, "invalid", f"{name}: «{raw}» no es un instante FHIR (fecha, hora y zona)", name
        ) from None
    return moment.astimezone(UTC)


def interval(text: str) -> tuple[datetime, datetime]:
    """A FHIR date, dateTime or instant as the closed UTC interval it covers; ValueError for
    anything else, including a moment outside the years 1 to 9999 once in UTC."""
    if not _DATE.fullmatch(text):
        raise ValueError(f"not a FHIR date it can represent: {text!r}")
    try:
        return _interval(text)
    except (OverflowError, ValueError):  # month 13, hour 25, a year past 9999 in UTC…
        raise ValueError(f"not a FHIR date it can represent: {text!r}") from None


def _interval(text: str) -> tuple[datetime, datetime]:
    if len(text) == 4:
        start = datetime(int(text), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1) - timedelta(microseconds=1)
    if len(text) == 7:
        year, month = int(text[:4]), int(text[5:7])
        start = datetime(year, month, 1, tzinfo=UTC)
        nxt = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        return start, nxt - timedelta(microseconds=1)
    if len(text) == 10:
        start = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return start, start + timedelta(days=1) - timedelta(microseconds=1)
    leap = text[17:19] == "60"  # 23:59:60 lies in the last second of its minute
    if leap:
        text = text[:17] + "59" + text[19:]
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if leap:
        moment = moment.replace(microsecond=999_999)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    # A time covers what its precision leaves open (R4 §3.1.1.4.2): a minute, a second, or
    # the last digit of its fraction (the server's own meta.lastUpdated, to the millisecond,
    # covers the microseconds it keeps).
    if leap:
        return moment, moment
    if moment >= FAR_FUTURE - _precision(text):  # the last moments of 9999: its last instant
        return moment, max(moment, FAR_FUTURE.replace(microsecond=999_999))
    return moment, max(moment, moment + _precision(text) - timedelta(microseconds=1))


def _precision(text: str) -> timedelta:
    """The span a dateTime's written time leaves open: `T10:00` a minute, `T10:00:30` a
    second, `T10:00:30.74` a hundredth (down to the microsecond the store keeps)."""
    if text[16:17] != ":":  # hours and minutes only
        return timedelta(minutes=1)
    if text[19:20] != ".":
        return timedelta(seconds=1)
    digits = len(text[20:]) - len(text[20:].lstrip("0123456789"))
    return timedelta(microseconds=10 ** max(0, 6 - digits))


def dates(value: Any) -> Iterator[tuple[datetime, datetime]]:
    if isinstance(value, str):
        yield interval(value)
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        start = interval(value["start"])[0] if value.get("start") else FAR_PAST
        end = interval(value["end"])[1] if value.get("end") else FAR_FUTURE
        yield start, end


# The widths of the index columns (records/models.py): a code is cut (it still finds what
# it names by its first 200 characters), a longer system or reference is refused.
MAX_SYSTEM, MAX_CODE, MAX_TARGET = 200, 200, 120


@dataclass(frozen=True, slots=True)
class Index:
    tokens: list[tuple[str, str | None, str]]
    references: list[tuple[str, str]]
    dates: list[tuple[str, datetime, datetime]]


def index(resource: dict[str, Any]) -> Index:
    """The index rows of a resource, by its type's parameters."""
    out = Index([], [], [])
    for name, param in PARAMS.get(resource["resourceType"], {}).items():
        for path in param.paths:
            choices = _DATE_CHOICES if param.kind == "date" else None
            for value in _values(resource, path, choices):
                where = f"{resource['resourceType']}.{path}"
                if param.kind == "token":
                    for system, code in tokens(value):
                        if system is not None and len(system) > MAX_SYSTEM:
                            raise FhirError.one(
                                400, "too-long", f"{name}: un system de más de {MAX_SYSTEM} "
                                "caracteres no se puede indexar", where,
                            )  # fmt: skip
                        out.tokens.append((name, system, code[:MAX_CODE]))
                elif param.kind == "reference":
                    target = reference(value)
                    if target and len(target) > MAX_TARGET:  # an id past FHIR's 64 characters
                        raise FhirError.one(
                            400, "invalid", f"{name}: la referencia {target[:80]}… es más larga "
                            "que Tipo/id (un id tiene a lo más 64 caracteres)", where,
                        )  # fmt: skip
                    if target and (name != "patient" or target.startswith("Patient/")):
                        out.references.append((name, target))
                else:
                    try:
                        out.dates.extend((name, a, b) for a, b in dates(value))
                    except ValueError:
                        raise FhirError.one(
                            400, "invalid", f"{name}: «{value}» no es una fecha que se pueda "
                            "indexar (fuera de los años 1 a 9999 en UTC)",
                            f"{resource['resourceType']}.{path}",
                        ) from None  # fmt: skip
    return out


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the Patient a resource belongs to (its partition), if it names one."""
    path = PATIENT_PATH.get(resource["resourceType"])
    if path is None:
        return None
    for value in _values(resource, path):
        target = reference(value)
        if target and target.startswith("Patient/"):
            return target.split("/", 1)[1]
    return None


def local_references(node: Any) -> Iterator[str]:
    """Every literal relative reference ("Type/id") anywhere in a resource."""
    if isinstance(node, dict):
        ref = reference(node) if "reference" in node else None
        if ref:
            yield ref
        for value in node.values():
            yield from local_references(value)
    elif isinstance(node, list):
        for item in node:
            yield from local_references(item)


def reference_sites(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(reference text, FHIRPath of the Reference holding it) for every `reference` in a
    resource: what an error about one names as its expression."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            yield ref, path
        for key, value in node.items():
            yield from reference_sites(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from reference_sites(item, f"{path}[{i}]")


def malformed_reference(ref: str) -> bool:
    """A relative reference that names no resource: not `Type/id` (or its `_history`), nor
    a contained (`#id`), a bundle entry (`urn:`) or an absolute URL."""
    if ref.startswith(("#", "urn:")) or "://" in ref:
        return False
    return reference({"reference": ref}) is None


def unresolved_references(node: Any) -> Iterator[str]:
    """References to a bundle entry (`urn:uuid:…`) left in a resource: outside a transaction
    that resolves them they point at nothing."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:"):
            yield ref
        for value in node.values():
            yield from unresolved_references(value)
    elif isinstance(node, list):
        for item in node:
            yield from unresolved_references(item)
