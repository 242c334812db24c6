"""Which FHIR resource types the store keeps.

The server speaks FHIR R4 (4.0.1) and validates with the fhir.resources R4B (4.3.0) models.
R4B kept most R4 types as they were, added some and replaced others
(https://hl7.org/fhir/R4B/diff.html). The store keeps every R4 type that R4B can represent,
except four: Patient (the registry's person; a Patient outside the registry comes only from
a bulk load, see docs/fhir.md), AuditEvent (the server's own audit log, read-only), Bundle
(a transaction or batch is processed, not kept) and Parameters (an operation's input or
output, with no REST endpoint: FHIR R4 parameters.html).

Types with search parameters (records/indexing.py `PARAMS`) are searchable; the others are
kept and read by id (read, vread, history), never listed by a search: a list of everybody's
MedicationDispense, say, is not something this server hands out."""

from __future__ import annotations

# R4's types that R4B kept (R4B models represent them).
_COMMON = """
Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest
DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference Encounter Endpoint
EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable
ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group
GuidanceResponse HealthcareService ImagingStudy Immunization ImmunizationEvaluation
ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library Linkage List
Location Measure MeasureReport Media Medication MedicationAdministration MedicationDispense
MedicationKnowledge MedicationRequest MedicationStatement MessageDefinition MessageHeader
MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition
OperationDefinition OperationOutcome Organization OrganizationAffiliation Parameters Patient
PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole
Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup
ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition
StructureMap Subscription Substance SupplyDelivery SupplyRequest Task
TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription
"""
# R4 types that R4B removed or replaced (MedicinalProduct* -> *ProductDefinition and
# others, SubstanceSpecification -> SubstanceDefinition, the EvidenceSynthesis resources ->
# Evidence): an R4 instance of one of them has no R4B model to be validated with.
_R4_ONLY = """
EffectEvidenceSynthesis MedicinalProduct MedicinalProductAuthorization
MedicinalProductContraindication MedicinalProductIndication MedicinalProductIngredient
MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged
MedicinalProductPharmaceutical MedicinalProductUndesirableEffect RiskEvidenceSynthesis
SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
SubstanceSourceMaterial SubstanceSpecification
"""
R4_ONLY = frozenset(_R4_ONLY.split())
R4_TYPES = frozenset(_COMMON.split()) | R4_ONLY
NOT_STORED = {
    "Patient": "el Patient es la persona del padrón (Patient/CURP): se registra en el padrón",
    "Bundle": "un Bundle se envía a la base (POST /fhir) como transaction o batch",
    "Parameters": "Parameters es la entrada o salida de una operación, no se guarda",
    "AuditEvent": "AuditEvent es la bitácora de auditoría de este servidor, de solo lectura",
}
# What the store keeps (R4 types R4B represents, but the four above).
# The R4 types the R4B models represent (what a resource may contain, stored or not).
R4_TYPES = frozenset(_COMMON.split())
STORED_TYPES = frozenset(_COMMON.split()) - frozenset(NOT_STORED)


def refusal(kind: str) -> str | None:
    """Why a resource of this type is not kept here, or None when it is."""
    if kind in STORED_TYPES:
        return None
    if kind in NOT_STORED:
        return NOT_STORED[kind]
    if kind in R4_ONLY:
        return (
            f"{kind} es un tipo de FHIR R4 que R4B eliminó o reemplazó: los modelos R4B con "
            "que este servidor valida no pueden representarlo"
        )
    return f"{kind} no es un tipo de recurso de FHIR R4"
