"""Required bindings of the searchable clinical types (FHIR R4 4.0.1 value sets).

The fhir.resources models check a `code` element's grammar, not its value set: an
Observation with `"status": "terminada"` passes them. FHIR makes these bindings *required*
(terminologies.html#required): any other value is an error, and a status that no system
understands would silently drop the resource from `status=` searches. Each entry is the
element's path and the codes its value set allows; for a CodeableConcept the codings of the
value set's system are checked (codings of other systems may accompany them)."""

from __future__ import annotations

from typing import Any

from salud.records.outcome import Issue

_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# (type, element) -> allowed codes of a `code` element.
CODES: dict[tuple[str, str], frozenset[str]] = {
    ("AllergyIntolerance", "type"): _codes("allergy intolerance"),
    ("AllergyIntolerance", "criticality"): _codes("low high unable-to-assess"),
    ("Appointment", "status"): _codes(
        "proposed pending booked arrived fulfilled cancelled noshow entered-in-error "
        "checked-in waitlist"
    ),
    ("Consent", "status"): _codes("draft proposed active rejected inactive entered-in-error"),
    ("Coverage", "status"): _codes("active cancelled draft entered-in-error"),
    ("DiagnosticReport", "status"): _codes(
        "registered partial preliminary final amended corrected appended cancelled "
        "entered-in-error unknown"
    ),
    ("DocumentReference", "status"): _codes("current superseded entered-in-error"),
    ("DocumentReference", "docStatus"): _codes("preliminary final amended entered-in-error"),
    ("Encounter", "status"): _codes(
        "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"
    ),
    ("Immunization", "status"): _codes("completed entered-in-error not-done"),
    ("Location", "status"): _codes("active suspended inactive"),
    ("MedicationRequest", "status"): _codes(
        "active on-hold cancelled completed entered-in-error stopped draft unknown"
    ),
    ("MedicationRequest", "intent"): _codes(
        "proposal plan order original-order reflex-order filler-order instance-order option"
    ),
    ("MedicationStatement", "status"): _codes(
        "active completed entered-in-error intended stopped on-hold unknown not-taken"
    ),
    ("Observation", "status"): _codes(
        "registered preliminary final amended corrected cancelled entered-in-error unknown"
    ),
    ("Practitioner", "gender"): _codes("male female other unknown"),
    ("Procedure", "status"): _codes(
        "preparation in-progress not-done on-hold stopped completed entered-in-error unknown"
    ),
}

# (type, element) -> (code system, allowed codes) of a CodeableConcept.
CONCEPTS: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    ("AllergyIntolerance", "clinicalStatus"): (
        _TERMINOLOGY + "allergyintolerance-clinical",
        _codes("active inactive resolved"),
    ),
    ("AllergyIntolerance", "verificationStatus"): (
        _TERMINOLOGY + "allergyintolerance-verification",
        _codes("unconfirmed confirmed refuted entered-in-error"),
    ),
    ("Condition", "clinicalStatus"): (
        _TERMINOLOGY + "condition-clinical",
        _codes("active recurrence relapse inactive remission resolved"),
    ),
    ("Condition", "verificationStatus"): (
        _TERMINOLOGY + "condition-ver-status",
        _codes("unconfirmed provisional differential confirmed refuted entered-in-error"),
    ),
}

_BY_TYPE: dict[str, list[str]] = {}
for _kind, _element in (*CODES, *CONCEPTS):
    _BY_TYPE.setdefault(_kind, []).append(_element)


def binding_issues(doc: dict[str, Any]) -> list[Issue]:
    """One issue per value outside its required value set (the model has checked shapes)."""
    kind = doc["resourceType"]
    issues: list[Issue] = []
    for element in _BY_TYPE.get(kind, ()):
        value = doc.get(element)
        if value is None:
            continue
        if (kind, element) in CODES:
            allowed = CODES[kind, element]
            if value not in allowed:
                issues.append(_issue(f"{kind}.{element}", value, allowed))
            continue
        system, allowed = CONCEPTS[kind, element]
        for i, coding in enumerate(value.get("coding") or []):
            if coding.get("system") == system and coding.get("code") not in allowed:
                path = f"{kind}.{element}.coding[{i}].code"
                issues.append(_issue(path, coding.get("code"), allowed))
    return issues


def _issue(path: str, value: Any, allowed: frozenset[str]) -> Issue:
    return Issue(
        "code-invalid",
        f"«{value}» no es un código permitido (enlace obligatorio de FHIR R4): "
        + ", ".join(sorted(allowed)),
        path,
    )
