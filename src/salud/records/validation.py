"""Parsing and validating FHIR JSON on the way in (fhir.resources R4B models; R4B and R4
agree on every resource type this server stores). Validated once, stored as received."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from salud.identity import curp
from salud.kit import exactjson
from salud.records.bindings import binding_issues
from salud.records.codes import CIE10_SYSTEMS, cie10_known
from salud.records.compartment import MAX_PATIENT_ID
from salud.records.outcome import FhirError, Issue
from salud.records.types import R4_TYPES, STORED_TYPES, refusal

MAX_ID = MAX_PATIENT_ID  # a FHIR id's 64 characters, which the partition key holds
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# Objects and lists nested deeper than this are refused before anything walks them (the
# models, the reference rewriting of Bundles and the indexers recurse). A transaction Bundle
# of Questionnaires with items nested twenty deep stays well under it.
MAX_DEPTH = 100


def _deeper_than(doc: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        values = node.values() if type(node) is dict else node
        stack.extend((v, depth + 1) for v in values if type(v) is dict or type(v) is list)
    return False


def parse(body: bytes, expected_type: str | None = None) -> dict[str, Any]:
    """The JSON object of a request body; FhirError 400 when it is not one."""
    try:
        doc = exactjson.loads(body)
    except exactjson.JSONDecodeError as exc:
        raise FhirError.one(400, "structure", f"JSON mal formado: {exc}") from None
    if _NUL.search(body):  # JSON writes U+0000 only escaped; an even run of \ is not one
        raise FhirError.one(
            400, "invalid",
            "un texto contiene el carácter nulo (\\u0000): los textos FHIR no admiten "
            "caracteres de control salvo tabulador y saltos de línea",
        )  # fmt: skip
    if not isinstance(doc, dict):
        raise FhirError.one(400, "structure", "se esperaba un objeto JSON (un recurso FHIR)")
    if _deeper_than(doc, MAX_DEPTH):
        raise FhirError.one(
            400, "structure", f"el documento anida más de {MAX_DEPTH} niveles de objetos y listas"
        )
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


def _check_contained(doc: dict[str, Any], kind: str) -> None:
    """Every contained resource names a type the models know (fhir.resources raises a bare
    KeyError or TypeError for another: a 500, and the end of a bulk import)."""
    contained = doc.get("contained")
    if not isinstance(contained, list):
        return  # the model says what is wrong with it
    for i, item in enumerate(contained):
        where = f"{kind}.contained[{i}].resourceType"
        inner = item.get("resourceType") if isinstance(item, dict) else None
        if not isinstance(inner, str) or inner not in R4_TYPES:
            raise FhirError.one(400, "invalid", f"«{inner}» no es un tipo de recurso R4", where)


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
    _check_contained(doc, kind)
    try:
        get_fhir_model_class(kind).model_validate(doc)
    except RecursionError:  # a document built in process, deeper than parse() lets in
        raise FhirError.one(400, "structure", "el recurso anida demasiados niveles") from None
    except ValidationError as exc:
        issues = [
            Issue("invalid", f"{e['msg']}", _expression(tuple(e["loc"]), kind))
            for e in exc.errors()[:20]
        ]
        raise FhirError(400, issues) from None
    fhir_id = doc.get("id")
    if isinstance(fhir_id, str) and len(fhir_id) > MAX_ID:  # the model checks the characters
        raise FhirError.one(
            400, "invalid", f"un id tiene de 1 a {MAX_ID} caracteres (R4 datatypes.html#id)",
            f"{kind}.id",
        )  # fmt: skip
    if bound := binding_issues(doc):
        raise FhirError(400, bound)
    _check_codes(doc)


def _check_unregistered_patient(doc: dict[str, Any]) -> None:
    """A Patient kept in the store is its own record's partition key: an id (at most 64
    characters) that is not a CURP (a CURP's Patient is the registry's person)."""
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


# Where a diagnosis is coded, per type: paths (dotted, through lists) to the CodeableConcepts
# whose CIE-10 codings must exist in the DGIS catalog.
DIAGNOSIS_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Condition": ("code", "evidence.code"),
    "Encounter": ("reasonCode",),
    "Procedure": ("reasonCode", "complication"),
    "MedicationRequest": ("reasonCode",),
    "MedicationStatement": ("reasonCode",),
    "DiagnosticReport": ("conclusionCode",),
    "Observation": ("valueCodeableConcept",),
    "AllergyIntolerance": ("code",),
    "ServiceRequest": ("reasonCode",),
    "Immunization": ("reasonCode",),
    "FamilyMemberHistory": ("reasonCode", "condition.code"),
    "ClinicalImpression": ("finding.itemCodeableConcept",),
    "CarePlan": ("activity.detail.reasonCode",),
    "ChargeItem": ("reason",),
    "Claim": ("diagnosis.diagnosisCodeableConcept",),
    "ExplanationOfBenefit": ("diagnosis.diagnosisCodeableConcept",),
}


def _concepts(node: Any, parts: list[str], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(FHIR path, CodeableConcept) at `parts` below `node`, through lists."""
    if not parts:
        if isinstance(node, dict):
            yield where, node
        return
    value = node.get(parts[0]) if isinstance(node, dict) else None
    if isinstance(value, list):
        for j, item in enumerate(value):
            yield from _concepts(item, parts[1:], f"{where}.{parts[0]}[{j}]")
    elif value is not None:
        yield from _concepts(value, parts[1:], f"{where}.{parts[0]}")


def _check_codes(doc: dict[str, Any]) -> None:
    """CIE-10 codes must exist in the DGIS catalog (an unknown code is refused), wherever a
    diagnosis is coded (DIAGNOSIS_ELEMENTS): Condition.code, the reasons of encounters,
    procedures and prescriptions, a report's conclusions, a relative's conditions…"""
    kind = doc["resourceType"]
    issues = []
    for path in DIAGNOSIS_ELEMENTS.get(kind, ()):
        for where, concept in _concepts(doc, path.split("."), kind):
            for i, coding in enumerate(concept.get("coding") or []):
                code = str(coding.get("code", "")) if isinstance(coding, dict) else ""
                if (
                    isinstance(coding, dict)
                    and coding.get("system") in CIE10_SYSTEMS
                    and (not cie10_known(code))
                ):
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
