"""The registry's person as a FHIR Patient (the record belongs to the person)."""

from __future__ import annotations

from typing import Any

from salud.identity.models import Person
from salud.records.indexing import fhir_instant

CURP_SYSTEM = "urn:oid:2.16.840.1.113883.4.629"
_GENDER = {"H": "male", "M": "female", "X": "other"}


def to_patient(person: Person) -> dict[str, Any]:
    name: dict[str, Any] = {
        "use": "official",
        "family": " ".join(p for p in (person.first_surname, person.second_surname) if p),
        "given": person.given_names.split(),
    }
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": person.curp,
        "meta": {
            "versionId": str(person.version),
            "lastUpdated": fhir_instant(person.updated_at),
        },
        "identifier": [{"use": "official", "system": CURP_SYSTEM, "value": person.curp}],
        "active": True,
        "name": [name],
        "gender": _GENDER.get(person.sex, "unknown"),
        "birthDate": person.birth_date.isoformat(),
    }
    if person.phone:
        patient["telecom"] = [{"system": "phone", "value": person.phone}]
    if person.assigned_clues:
        patient["managingOrganization"] = {
            "identifier": {
                "system": "urn:oid:2.16.840.1.113883.4.631",
                "value": person.assigned_clues,
            }
        }
    return patient
