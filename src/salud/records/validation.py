"""Parsing and validating FHIR JSON on the way in (fhir.resources R4B models; R4B and R4
agree on every resource type this server stores). Validated once, stored as received."""

from __future__ import annotations

from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from salud.identity import curp
from salud.records.bindings import binding_issues
from salud.records.codes import CIE10_SYSTEMS, cie10_known
from salud.records.compartment import MAX_PATIENT_ID
from salud.records.outcome import FhirError, Issue
from salud.records.types import STORED_TYPES, refusal


def parse(body: bytes, expected_type: str | None = None) -> dict[str, Any]:
    """The JSON object of a request body; FhirError 400 when it is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError.one(400, "structure", f"JSON mal formado: {exc}") from None
    if not isinstance(doc, dict):
        raise FhirError.one(400, "structure", "se esperaba un objeto JSON (un recurso FHIR)")
    kind = doc.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise FhirError.one(400, "required", "falta resourceType", "resourceType")
    if expected_type is not None and kind != expected_type:
        raise FhirError.one(
            400, "invalid", f"resourceType es {kind} pero la URL es de {expected_type}",
            "resourceType",
        )  # fmt: skip
    return doc


def _expression(loc: tuple[Any, ...], kind: str) -> str:
    parts = [kind]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif not str(item).startswith("function-") and "[" not in str(item):
            parts.append(str(item))
    return ".".join(parts)


def validate(doc: dict[str, Any], *, unregistered_patient: bool = False) -> None:
    """Check a resource against its R4B model and our rules; FhirError names each problem.
    `unregistered_patient`: a Patient outside the registry is accepted (bulk loads only)."""
    kind = doc["resourceType"]
    if kind == "Patient" and unregistered_patient:
        _check_unregistered_patient(doc)
    elif kind not in STORED_TYPES:
        raise FhirError.one(
            400, "not-supported", f"este servidor no guarda recursos {kind}: {refusal(kind)}",
            "resourceType",
        )  # fmt: skip
    try:
        get_fhir_model_class(kind).model_validate(doc)
    except ValidationError as exc:
        issues = [
            Issue("invalid", f"{e['msg']}", _expression(tuple(e["loc"]), kind))
            for e in exc.errors()[:20]
        ]
        raise FhirError(400, issues) from None
    if bound := binding_issues(doc):
        raise FhirError(400, bound)
    _check_codes(doc)


def _check_unregistered_patient(doc: dict[str, Any]) -> None:
    """A Patient kept in the store is its own record's partition key: an id of at most 18
    characters that is not a CURP (a CURP's Patient is the registry's person)."""
    fhir_id = doc.get("id")
    if not isinstance(fhir_id, str) or not 0 < len(fhir_id) <= MAX_PATIENT_ID:
        raise FhirError.one(
            422, "business-rule",
            f"un Patient fuera del padrón necesita un id de 1 a {MAX_PATIENT_ID} caracteres",
            "Patient.id",
        )  # fmt: skip
    if curp.is_valid(fhir_id):
        raise FhirError.one(
            422, "business-rule",
            f"Patient/{fhir_id} es una CURP: esa persona se registra en el padrón "
            "(salud persons import), no como recurso",
            "Patient.id",
        )  # fmt: skip


# Where a diagnosis is coded, per type: the CodeableConcept elements (single or repeated)
# whose CIE-10 codings must exist in the DGIS catalog.
DIAGNOSIS_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Condition": ("code",),
    "Encounter": ("reasonCode",),
    "Procedure": ("reasonCode", "complication"),
    "MedicationRequest": ("reasonCode",),
    "MedicationStatement": ("reasonCode",),
    "DiagnosticReport": ("conclusionCode",),
    "Observation": ("valueCodeableConcept",),
    "AllergyIntolerance": ("code",),
    "ServiceRequest": ("reasonCode",),
    "Immunization": ("reasonCode",),
}


def _check_codes(doc: dict[str, Any]) -> None:
    """CIE-10 codes must exist in the DGIS catalog (an unknown code is refused), wherever a
    diagnosis is coded: Condition.code, the reasons of encounters, procedures, prescriptions,
    a report's conclusions… (DIAGNOSIS_ELEMENTS)."""
    kind = doc["resourceType"]
    issues = []
    for element in DIAGNOSIS_ELEMENTS.get(kind, ()):
        value = doc.get(element)
        concepts = value if isinstance(value, list) else [value] if value else []
        for j, concept in enumerate(concepts):
            if not isinstance(concept, dict):
                continue
            where = f"{kind}.{element}[{j}]" if isinstance(value, list) else f"{kind}.{element}"
            for i, coding in enumerate(concept.get("coding") or []):
                code = str(coding.get("code", ""))
                if coding.get("system") in CIE10_SYSTEMS and not cie10_known(code):
                    issues.append(
                        Issue(
                            "code-invalid",
                            f"el código CIE-10 «{coding.get('code')}» no está en el catálogo "
                            "de la DGIS",
                            f"{where}.coding[{i}].code",
                        )
                    )
    if issues:
        raise FhirError(422, issues)
