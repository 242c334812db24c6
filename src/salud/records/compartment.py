"""Whose record a resource belongs to: the person (Patient id) that partitions the store.

A clinical resource of a searchable type names its patient where its `patient` search
parameter says (records/indexing.py `PATIENT_PATH`), and must. A resource of any other kept
type belongs to the first Patient it refers to, looked for in `subject`, `patient` and
`beneficiary` first and then anywhere in it (FHIR R4 CompartmentDefinition-patient names
such elements for each type); one that names no Patient belongs to nobody's record
(Organization, Practitioner, ValueSet…). A Patient outside the registry is its own record.
Belonging to a person is what makes a resource subject to that person's access rules, so a
type is bound to a patient whenever it names one."""

from __future__ import annotations

from typing import Any

from salud.records.indexing import PARAMS, PATIENT_PATH, local_references, patient_of
from salud.records.outcome import FhirError
from salud.storage.base import PARTITION_KEY_LENGTH

# The width of the partition key (fhir_resources.person_curp, audit_events.person_curp): a
# CURP (the registry's Patients), or any FHIR id (a Patient kept outside the registry). A
# reference may name a longer id than FHIR allows; no record is kept under one.
MAX_PATIENT_ID = PARTITION_KEY_LENGTH
_FIRST = ("subject", "patient", "beneficiary")

# The R4 Patient compartment (CompartmentDefinition-patient): the types that may hold a
# person's data, and Binary (whose owner is its securityContext). One of them stored under
# nobody (a MedicationDispense whose patient is only an identifier or an absolute URL) is
# still someone's: no clinician reaches it (records/service.may), and the system export
# leaves it out of "nobody's" resources.
PATIENT_COMPARTMENT = frozenset({
    "Account", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse",
    "AuditEvent", "Basic", "BodyStructure", "CarePlan", "CareTeam", "ChargeItem", "Claim",
    "ClaimResponse", "ClinicalImpression", "Communication", "CommunicationRequest",
    "Composition", "Condition", "Consent", "Coverage", "CoverageEligibilityRequest",
    "CoverageEligibilityResponse", "DetectedIssue", "DeviceRequest", "DeviceUseStatement",
    "DiagnosticReport", "DocumentManifest", "DocumentReference", "Encounter",
    "EnrollmentRequest", "EpisodeOfCare", "ExplanationOfBenefit", "FamilyMemberHistory",
    "Flag", "Goal", "Group", "ImagingStudy", "Immunization", "ImmunizationEvaluation",
    "ImmunizationRecommendation", "Invoice", "List", "MeasureReport", "Media",
    "MedicationAdministration", "MedicationDispense", "MedicationRequest",
    "MedicationStatement", "MolecularSequence", "NutritionOrder", "Observation", "Patient",
    "Person", "Procedure", "Provenance", "QuestionnaireResponse", "RelatedPerson",
    "RequestGroup", "ResearchSubject", "RiskAssessment", "Schedule", "ServiceRequest",
    "Specimen", "SupplyDelivery", "SupplyRequest", "VisionPrescription", "Binary",
})  # fmt: skip


def _first_patient(node: Any) -> str | None:
    for target in local_references(node):
        if target.startswith("Patient/"):
            return target.split("/", 1)[1]
    return None


def patient_in(doc: dict[str, Any]) -> str | None:
    """The id of the Patient whose record this resource is part of, if any."""
    kind = doc["resourceType"]
    if kind == "Patient":
        found = doc.get("id")
        return found if isinstance(found, str) else None
    if kind in PARAMS:
        return patient_of(doc)
    for key in _FIRST:
        found = _first_patient(doc.get(key))
        if found is not None:
            return found
    return _first_patient(doc)


def partition(doc: dict[str, Any]) -> str | None:
    """The person a resource is stored under; FhirError when it cannot be stored under one."""
    kind = doc["resourceType"]
    patient = patient_in(doc)
    path = PATIENT_PATH.get(kind)
    if path is not None and patient is None:
        raise FhirError.one(
            422, "required", f"{kind} debe referir a su paciente (Patient/CURP) en {path}",
            f"{kind}.{path}",
        )  # fmt: skip
    if patient is not None and len(patient) > MAX_PATIENT_ID:
        raise FhirError.one(
            422, "business-rule",
            f"Patient/{patient}: el id de un Patient de este servidor es una CURP o tiene a lo "
            f"más {MAX_PATIENT_ID} caracteres",
        )  # fmt: skip
    return patient
