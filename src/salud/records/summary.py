"""Patient/$summary: a person's International Patient Summary as a FHIR document Bundle.

FHIR R4 §3.3 (Documents): a Bundle of type `document` with an identifier and a timestamp,
whose first entry is a Composition; the Composition's subject, its author and every
section entry are in the Bundle, and so are the resources of the record they refer to (as
far as the caller may read them). The sections follow the HL7 IPS implementation guide
(http://hl7.org/fhir/uv/ips, LOINC section codes): problems, allergies and medications are
always there (when empty, with an `emptyReason` and a narrative that says so, IPS
ips-comp-1); immunizations, results, procedures, vital signs and past problems only when
the record has some. Every section has its narrative (a table in Spanish) and references
its entries. The IPS profiles themselves are not claimed: entries are served as written.

The Composition is built here, not stored, so its fullUrl is a `urn:uuid:`; relative
references from such an entry have no defined meaning (FHIR R4 §2.36.4.1), so the
Composition refers to each entry by that entry's fullUrl. The stored resources keep their
relative references, which resolve against their own RESTful fullUrls.

The summary is read through the same door as $everything (`service.open_record`): the
caller's permission and clinical basis, one audit entry, and what the person restricted to
other institutions left out before anything is built, so that an empty section reads the
same whether nothing was recorded or all of it is restricted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salud import __version__
from salud.access.context import Caller
from salud.kit import exactjson
from salud.kit.clock import utcnow
from salud.records import repository, service
from salud.records.indexing import fhir_instant
from salud.records.narrative import (
    codes,
    concept,
    day,
    dosage,
    medication,
    origin,
    recency,
    result,
    status,
)
from salud.storage.fastread import FastReader

ACTION = "records:Patient:summary"
LOINC = "http://loinc.org"
PATIENT_SUMMARY = "60591-5"  # LOINC "Patient summary Document"
SECTION_LIMIT = 100  # the most recent entries of a section; the narrative says how many more
_EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_XHTML = "http://www.w3.org/1999/xhtml"

# The types a summary reads (what `section_of` places).
TYPES = (
    "AllergyIntolerance", "Condition", "DiagnosticReport", "Immunization", "MedicationRequest",
    "MedicationStatement", "Observation", "Procedure",
)  # fmt: skip
# Entries that do not belong in a summary: never happened or recorded by mistake.
_DROPPED_STATUS = frozenset({"entered-in-error", "cancelled", "draft"})
_NOT_TRUE = frozenset({"entered-in-error", "refuted"})  # verificationStatus
_PAST = frozenset({"inactive", "remission", "resolved"})  # Condition.clinicalStatus


Row = Callable[[dict[str, Any]], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    code: str  # LOINC
    display: str  # LOINC's name
    title: str  # what the reader sees
    columns: tuple[str, ...]
    row: Row
    empty: str | None  # the narrative when empty; None: the section is left out when empty


def _problem(d: dict[str, Any]) -> tuple[str, ...]:
    return concept(d.get("code")), status(d.get("clinicalStatus")), day(d), origin(d)


SECTIONS = (
    Section(
        "problems", "11450-4", "Problem list - Reported", "Problemas de salud",
        ("Problema", "Estado", "Inicio", "Origen"), _problem,
        "No hay problemas de salud activos registrados en el expediente.",
    ),
    Section(
        "allergies", "48765-2", "Allergies and adverse reactions Document",
        "Alergias e intolerancias", ("Alergia o intolerancia", "Criticidad", "Estado", "Origen"),
        lambda d: (concept(d.get("code")), status(d.get("criticality")),
                   status(d.get("clinicalStatus")), origin(d)),
        "No hay alergias ni intolerancias registradas en el expediente.",
    ),
    Section(
        "medications", "10160-0", "History of Medication use Narrative", "Medicamentos",
        ("Medicamento", "Estado", "Indicación", "Fecha", "Origen"),
        lambda d: (medication(d), status(d.get("status")), dosage(d), day(d), origin(d)),
        "No hay medicamentos registrados en el expediente.",
    ),
    Section(
        "immunizations", "11369-6", "History of Immunization Narrative", "Vacunas",
        ("Vacuna", "Fecha", "Estado", "Origen"),
        lambda d: (concept(d.get("vaccineCode")), day(d), status(d.get("status")), origin(d)),
        None,
    ),
    Section(
        "results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative",
        "Resultados", ("Estudio", "Resultado", "Fecha", "Origen"),
        lambda d: (concept(d.get("code")), result(d), day(d), origin(d)), None,
    ),
    Section(
        "procedures", "47519-4", "History of Procedures Document", "Procedimientos",
        ("Procedimiento", "Fecha", "Estado", "Origen"),
        lambda d: (concept(d.get("code")), day(d), status(d.get("status")), origin(d)),
        None,
    ),
    Section(
        "vital_signs", "8716-3", "Vital signs", "Signos vitales",
        ("Signo vital", "Valor", "Fecha", "Origen"),
        lambda d: (concept(d.get("code")), result(d), day(d), origin(d)), None,
    ),
    Section(
        "past_problems", "11348-0", "History of Past illness Narrative",
        "Problemas de salud pasados", ("Problema", "Estado", "Inicio", "Origen"), _problem,
        None,
    ),
)  # fmt: skip


def section_of(doc: dict[str, Any]) -> str | None:
    """The section an entry of the record goes to, or None when it stays out of the summary
    (recorded by mistake, never happened, or a kind of observation the IPS puts elsewhere)."""
    kind = doc.get("resourceType")
    if doc.get("status") in _DROPPED_STATUS:
        return None
    if kind in ("Condition", "AllergyIntolerance"):
        if codes(doc.get("verificationStatus")) & _NOT_TRUE:
            return None
        if kind == "AllergyIntolerance":
            return "allergies"
        return "past_problems" if codes(doc.get("clinicalStatus")) & _PAST else "problems"
    if kind == "Observation":
        categories = codes(doc.get("category"), _OBSERVATION_CATEGORY)
        if "vital-signs" in categories:
            return "vital_signs"
        return "results" if categories & {"laboratory", "imaging"} else None
    return {
        "MedicationRequest": "medications",
        "MedicationStatement": "medications",
        "Immunization": "immunizations",
        "Procedure": "procedures",
        "DiagnosticReport": "results",
    }.get(str(kind))


def _div(body: str) -> str:
    return f'<div xmlns="{_XHTML}">{body}</div>'


def _table(section: Section, docs: list[dict[str, Any]], more: int) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in section.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in section.row(doc)) + "</tr>"
        for doc in docs
    )
    note = (
        f"<p>Se muestran las {len(docs)} entradas más recientes de {len(docs) + more}.</p>"
        if more
        else ""
    )
    return _div(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}")


def _url(base: str, doc: dict[str, Any]) -> str:
    return f"{base}/{doc['resourceType']}/{doc['id']}"


def _section(base: str, section: Section, docs: list[dict[str, Any]], more: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "title": section.title,
        "code": {"coding": [{"system": LOINC, "code": section.code, "display": section.display}]},
    }
    if docs:
        out["text"] = {"status": "generated", "div": _table(section, docs, more)}
        out["entry"] = [{"reference": _url(base, d)} for d in docs]
    else:  # FHIR R4 cmp-2: an emptyReason only on an empty section
        out["text"] = {"status": "generated", "div": _div(f"<p>{escape(section.empty or '')}</p>")}
        out["emptyReason"] = {
            "coding": [{"system": _EMPTY_REASON, "code": "unavailable", "display": "Unavailable"}],
            "text": "Sin información en el expediente",
        }
    return out


def _named(doc: dict[str, Any], drugs: dict[str, str]) -> dict[str, Any]:
    """The document as the narrative reads it: a medicationReference without a display
    takes the referenced Medication's name (the entry itself goes out unchanged)."""
    ref = doc.get("medicationReference")
    if not isinstance(ref, dict) or ref.get("display") or ref.get("reference") not in drugs:
        return doc
    return {**doc, "medicationReference": {**ref, "display": drugs[ref["reference"]]}}


async def summary(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, curp: str
) -> dict[str, Any]:
    """Patient/$summary: the person's summary as a `document` Bundle (see the module)."""
    who, _, hidden, patient = await service.open_record(session, reader, caller, curp, ACTION)
    grouped: dict[str, list[dict[str, Any]]] = {s.key: [] for s in SECTIONS}
    for _, _, content in await repository.live_of_types(session, curp, TYPES, hidden):
        doc = exactjson.loads(content)
        key = section_of(doc)
        if key is not None:
            grouped[key].append(doc)
    chosen: list[tuple[Section, list[dict[str, Any]], int]] = []
    for section in SECTIONS:
        docs = sorted(grouped[section.key], key=recency, reverse=True)
        shown = docs[:SECTION_LIMIT]
        if shown or section.empty is not None:
            chosen.append((section, shown, len(docs) - len(shown)))
    listed = [d for _, shown, _ in chosen for d in shown]
    referenced = await service.referenced(session, caller, curp, listed, hidden)
    # A medication named by reference reads, in the narrative, as the Medication's code.
    drugs = {f"Medication/{d['id']}": concept(d.get("code"))
             for d in referenced if d.get("resourceType") == "Medication"}  # fmt: skip
    sections = [
        _section(base, section, [_named(d, drugs) for d in shown], more)
        for section, shown, more in chosen
    ]

    now = fhir_instant(utcnow())
    patient_url = f"{base}/Patient/{curp}"
    author = uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/Device/salud-universal")
    composition_id = str(uuid.uuid4())
    name = (patient.get("name") or [{}])[0]
    composition = {
        "resourceType": "Composition",
        "id": composition_id,
        "language": "es-MX",
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": PATIENT_SUMMARY,
                             "display": "Patient summary Document"}]},
        "subject": {"reference": patient_url,
                    "display": name.get("text")
                    or " ".join([*name.get("given", []), name.get("family", "")]).strip()
                    or curp},
        "date": now,
        "author": [{"reference": f"urn:uuid:{author}", "display": "Salud Universal"}],
        "title": "Resumen del paciente",
        "section": sections,
    }  # fmt: skip
    device = {
        "resourceType": "Device",
        "id": str(author),
        "deviceName": [{"name": "Salud Universal", "type": "user-friendly-name"}],
        "version": [{"value": __version__}],
    }
    entries = [
        {"fullUrl": f"urn:uuid:{composition_id}", "resource": composition},
        {"fullUrl": patient_url, "resource": patient},
        {"fullUrl": f"urn:uuid:{author}", "resource": device},
    ]
    entries += [{"fullUrl": _url(base, d), "resource": d} for d in listed + referenced]
    await who.record(
        ACTION, "Patient", person_curp=curp, subject_id=f"Patient/{curp}",
        detail={"sections": [s["code"]["coding"][0]["code"] for s in sections if "entry" in s],
                "entries": len(listed) + len(referenced)},
    )  # fmt: skip
    return {
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": now,
        "entry": entries,
    }
