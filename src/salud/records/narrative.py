"""How an entry of the record reads to a person: its concept, status, date, value and
origin as short Spanish text (for the narratives of Patient/$summary). Pure functions over
the stored JSON; nothing here is stored or trusted for decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from salud.records.indexing import FAR_PAST, interval
from salud.records.service import INSTITUTION_TAG

NONE = "—"

_SPANISH = {
    "active": "activo", "recurrence": "recurrente", "relapse": "recaída",
    "inactive": "inactivo", "remission": "en remisión", "resolved": "resuelto",
    "completed": "completado", "stopped": "suspendido", "on-hold": "en pausa",
    "intended": "prevista", "not-taken": "no tomado", "unknown": "desconocido",
    "not-done": "no realizado", "in-progress": "en curso", "preparation": "en preparación",
    "registered": "registrado", "preliminary": "preliminar", "final": "final",
    "amended": "corregido", "corrected": "corregido", "partial": "parcial",
    "appended": "con adenda", "low": "baja", "high": "alta",
    "unable-to-assess": "no evaluable",
}  # fmt: skip

# Where each type keeps the clinical date of its entry (first found wins).
_WHEN = {
    "Condition": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "AllergyIntolerance": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod", "dateAsserted"),
    "Immunization": ("occurrenceDateTime",),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "Observation": ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod", "issued"),
}


def codes(concept: Any, system: str | None = None) -> set[str]:
    """The codes of a CodeableConcept or of a list of them (of one system, if given)."""
    items = concept if isinstance(concept, list) else [concept]
    return {
        coding["code"]
        for item in items
        if isinstance(item, dict)
        for coding in item.get("coding") or []
        if isinstance(coding, dict)
        and isinstance(coding.get("code"), str)
        and (system is None or coding.get("system") == system)
    }


def concept(value: Any) -> str:
    """What a CodeableConcept (or the first of a list) says to a reader: its text, else a
    coding's display (with the code), else a code."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, dict):
        return NONE
    if isinstance(value.get("text"), str) and value["text"]:
        return str(value["text"])
    codings = [c for c in value.get("coding") or [] if isinstance(c, dict)]
    for coding in codings:
        if coding.get("display"):
            code = coding.get("code")
            return f"{coding['display']} ({code})" if code else str(coding["display"])
    for coding in codings:
        if coding.get("code"):
            return str(coding["code"])
    return NONE


def status(value: Any) -> str:
    """A status (a code, or the codes of a CodeableConcept) in Spanish."""
    found = sorted(codes(value)) if isinstance(value, dict) else [value]
    shown = [_SPANISH.get(c, c) for c in found if isinstance(c, str) and c]
    return ", ".join(shown) or NONE


def clinical_date(doc: dict[str, Any]) -> str:
    """When the entry happened (onset, authored, effective, performed…), as written."""
    for name in _WHEN.get(doc["resourceType"], ()):
        value = doc.get(name)
        if isinstance(value, dict):
            value = value.get("start") or value.get("end")
        if isinstance(value, str) and value:
            return value
    return ""


def day(doc: dict[str, Any]) -> str:
    """The day of `clinical_date`, for a table cell."""
    return clinical_date(doc)[:10] or NONE


def recency(doc: dict[str, Any]) -> datetime:
    """The clinical date of an entry, else when it was written: newest first in a section."""
    for text in (clinical_date(doc), (doc.get("meta") or {}).get("lastUpdated")):
        if isinstance(text, str) and text:
            try:
                return interval(text)[0]
            except ValueError:
                continue
    return FAR_PAST


def origin(doc: dict[str, Any]) -> str:
    """Which institution and unit wrote the entry (`meta` as the store sets it)."""
    meta = doc.get("meta") or {}
    institution = next(
        (
            str(t.get("display") or t.get("code"))
            for t in meta.get("tag") or []
            if isinstance(t, dict) and t.get("system") == INSTITUTION_TAG
        ),
        None,
    )
    unit = str(meta.get("source") or "").removeprefix("urn:clues:")
    return " · ".join(p for p in (institution, unit) if p) or NONE


def _value(node: dict[str, Any]) -> str:
    quantity = node.get("valueQuantity")
    if isinstance(quantity, dict) and "value" in quantity:
        return f"{quantity['value']} {quantity.get('unit') or quantity.get('code') or ''}".strip()
    if "valueCodeableConcept" in node:
        return concept(node["valueCodeableConcept"])
    if "valueBoolean" in node:
        return "sí" if node["valueBoolean"] else "no"
    for name in ("valueString", "valueInteger", "valueDateTime", "valueTime"):
        if name in node:
            return str(node[name])
    if "dataAbsentReason" in node:
        return f"sin valor: {concept(node['dataAbsentReason'])}"
    return ""


def result(doc: dict[str, Any]) -> str:
    """An Observation's value (and its components'), or a DiagnosticReport's conclusion."""
    if doc["resourceType"] == "DiagnosticReport":
        if doc.get("conclusion"):
            return str(doc["conclusion"])
        if doc.get("conclusionCode"):
            return concept(doc["conclusionCode"])
        count = len(doc.get("result") or [])
        return f"{count} resultado(s)" if count else NONE
    parts = [_value(doc)] + [
        f"{concept(c.get('code'))}: {v}"
        for c in doc.get("component") or []
        if isinstance(c, dict) and (v := _value(c))
    ]
    return "; ".join(p for p in parts if p) or NONE


def medication(doc: dict[str, Any]) -> str:
    """The medication of a MedicationRequest or MedicationStatement."""
    if "medicationCodeableConcept" in doc:
        return concept(doc["medicationCodeableConcept"])
    ref = doc.get("medicationReference") or {}
    return str(ref.get("display") or ref.get("reference") or NONE)


def dosage(doc: dict[str, Any]) -> str:
    """The dosage instructions' text (MedicationRequest.dosageInstruction, …Statement.dosage)."""
    dosages = doc.get("dosageInstruction") or doc.get("dosage") or []
    texts = [str(d["text"]) for d in dosages if isinstance(d, dict) and d.get("text")]
    return "; ".join(texts) or NONE
