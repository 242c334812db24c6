"""Parsing and validating FHIR JSON on the way in (fhir.resources R4B models; R4B and R4
agree on every resource type this server stores). Validated once, stored as received."""

from __future__ import annotations

from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from salud.records.codes import CIE10_SYSTEMS, cie10_known
from salud.records.indexing import PARAMS
from salud.records.outcome import FhirError, Issue

# Types stored in the FHIR store (Patient comes from the registry).
STORED_TYPES = frozenset(PARAMS)


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


def validate(doc: dict[str, Any]) -> None:
    """Check a resource against its R4B model and our rules; FhirError names each problem."""
    kind = doc["resourceType"]
    if kind not in STORED_TYPES:
        raise FhirError.one(
            400, "not-supported", f"este servidor no guarda recursos {kind}", "resourceType"
        )
    try:
        get_fhir_model_class(kind).model_validate(doc)
    except ValidationError as exc:
        issues = [
            Issue("invalid", f"{e['msg']}", _expression(tuple(e["loc"]), kind))
            for e in exc.errors()[:20]
        ]
        raise FhirError(400, issues) from None
    _check_codes(doc)


def _check_codes(doc: dict[str, Any]) -> None:
    """CIE-10 diagnoses must exist in the DGIS catalog (an unknown code is refused)."""
    if doc["resourceType"] != "Condition":
        return
    issues = []
    for i, coding in enumerate((doc.get("code") or {}).get("coding") or []):
        if coding.get("system") in CIE10_SYSTEMS and not cie10_known(str(coding.get("code", ""))):
            issues.append(
                Issue(
                    "code-invalid",
                    f"el código CIE-10 «{coding.get('code')}» no está en el catálogo de la DGIS",
                    f"Condition.code.coding[{i}].code",
                )
            )
    if issues:
        raise FhirError(422, issues)
