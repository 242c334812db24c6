"""Patient/$summary: the International Patient Summary as a document Bundle, read through
the same access rules and audit log as $everything; and `_format` other than JSON refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.composition import Composition

from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.records import summary
from tests.conftest import TokenFor
from tests.records.test_fhir_api import (
    ICD10,
    IMSS_UNIT,
    ISSSTE_UNIT,
    cared_for,
    clinician,
    condition,
    outcome,
    patient,
)

LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
XHTML = "{http://www.w3.org/1999/xhtml}"
REQUIRED = ["11450-4", "48765-2", "10160-0"]  # problems, allergies, medications


# --- reading a summary ----------------------------------------------------------------------


def references(node: Any) -> Iterator[str]:
    """Every literal reference in a resource (contained ones, "#…", excepted)."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and not ref.startswith("#"):
            yield ref
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def resolve(bundle: dict[str, Any], full_url: str, ref: str) -> dict[str, Any] | None:
    """FHIR R4 §2.36.4.1: an absolute reference matches a fullUrl; a relative one is
    resolved against the base of the referring entry's RESTful fullUrl (none for a URN)."""
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    if ref.startswith("urn:") or "://" in ref:
        return by_url.get(ref)
    if full_url.startswith("urn:"):
        return None
    return by_url.get(f"{full_url.rsplit('/', 2)[0]}/{ref}")


def checked(answer: httpx.Response, dangling: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The summary, checked as a FHIR R4 document: valid for the R4B models, Composition
    first, unique fullUrls, every reference resolved inside the Bundle (but the `dangling`
    ones, which must not resolve), every section with an XHTML narrative."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    bundle: dict[str, Any] = answer.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "document"
    assert bundle["identifier"]["system"] == "urn:ietf:rfc:3986"
    assert bundle["identifier"]["value"].startswith("urn:uuid:")
    assert bundle["timestamp"]
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls))
    composition = bundle["entry"][0]["resource"]
    Composition.model_validate(composition)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]].count("Composition") == 1
    assert composition["type"]["coding"][0]["system"] == LOINC
    assert composition["type"]["coding"][0]["code"] == "60591-5"
    unresolved = {
        ref
        for entry in bundle["entry"]
        for ref in references(entry["resource"])
        if resolve(bundle, entry["fullUrl"], ref) is None
    }
    assert unresolved == dangling
    for section in composition["section"]:
        div = ET.fromstring(section["text"]["div"])  # well-formed XHTML, or this raises
        assert div.tag == f"{XHTML}div"
        assert section["text"]["status"] == "generated"
        assert ("entry" in section) != ("emptyReason" in section)
    return bundle


def sections(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    composition = bundle["entry"][0]["resource"]
    return {s["code"]["coding"][0]["code"]: s for s in composition["section"]}


def entries_of(bundle: dict[str, Any], section: dict[str, Any]) -> list[dict[str, Any]]:
    composition_url = bundle["entry"][0]["fullUrl"]
    found = [resolve(bundle, composition_url, e["reference"]) for e in section["entry"]]
    assert all(r is not None for r in found)
    return [r for r in found if r is not None]


def narrative(section: dict[str, Any]) -> str:
    return "".join(ET.fromstring(section["text"]["div"]).itertext())


def rows(section: dict[str, Any]) -> int:
    return len(ET.fromstring(section["text"]["div"]).findall(f".//{XHTML}tbody/{XHTML}tr"))


# --- building a record ----------------------------------------------------------------------


def vital(curp: str, when: str, systolic: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9",
                             "display": "Presión arterial"}]},
        "subject": {"reference": f"Patient/{curp}"}, "effectiveDateTime": when,
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}], "text": "Sistólica"},
             "valueQuantity": {"value": systolic, "unit": "mmHg"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}], "text": "Diastólica"},
             "valueQuantity": {"value": 80, "unit": "mmHg"}},
        ],
    }  # fmt: skip


async def write(client: httpx.AsyncClient, doc: dict[str, Any], headers: dict[str, str]) -> str:
    answer = await client.post(f"/fhir/{doc['resourceType']}", json=doc, headers=headers)
    assert answer.status_code == 201, answer.text
    fhir_id: str = answer.json()["id"]
    return fhir_id


async def full_record(
    client: httpx.AsyncClient, curp: str, doctor: dict[str, str]
) -> dict[str, str]:
    """A record with entries for every section, and some that must stay out; their ids."""
    me = {"reference": f"Patient/{curp}"}
    ids: dict[str, str] = {}
    ids["encounter"] = await write(client, {
        "resourceType": "Encounter", "status": "finished", "subject": me,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    }, doctor)  # fmt: skip
    ids["diabetes"] = await write(
        client, condition(curp, encounter={"reference": f"Encounter/{ids['encounter']}"}), doctor
    )
    ids["asthma"] = await write(client, condition(curp, "J45.9", clinicalStatus={"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
        "code": "resolved"}]}), doctor)  # fmt: skip
    ids["mistake"] = await write(client, {
        "resourceType": "Condition", "subject": me,
        "code": {"coding": [{"system": ICD10, "code": "K29.7"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "entered-in-error"}]},
    }, doctor)  # fmt: skip
    ids["allergy"] = await write(client, {
        "resourceType": "AllergyIntolerance", "patient": me, "criticality": "high",
        "code": {"text": "Penicilina"},
    }, doctor)  # fmt: skip
    ids["metformin"] = await write(client, {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": me, "medicationCodeableConcept": {"text": "Metformina 850 mg"},
        "authoredOn": "2026-11-20", "dosageInstruction": [{"text": "1 tableta cada 12 horas"}],
        "reasonReference": [{"reference": f"Condition/{ids['diabetes']}"}],
    }, doctor)  # fmt: skip
    ids["vaccine"] = await write(client, {
        "resourceType": "Immunization", "status": "completed", "patient": me,
        "vaccineCode": {"text": "Influenza estacional"}, "occurrenceDateTime": "2026-10-15",
    }, doctor)  # fmt: skip
    ids["hba1c"] = await write(client, {
        "resourceType": "Observation", "status": "final", "subject": me,
        "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": "4548-4", "display": "HbA1c"}]},
        "effectiveDateTime": "2026-11-18", "valueQuantity": {"value": 8.1, "unit": "%"},
    }, doctor)  # fmt: skip
    ids["report"] = await write(client, {
        "resourceType": "DiagnosticReport", "status": "final", "subject": me,
        "code": {"text": "Control de diabetes"}, "effectiveDateTime": "2026-11-18",
        "result": [{"reference": f"Observation/{ids['hba1c']}"}],
        "conclusion": "Control glucémico insuficiente",
    }, doctor)  # fmt: skip
    ids["appendix"] = await write(client, {
        "resourceType": "Procedure", "status": "completed", "subject": me,
        "code": {"text": "Apendicectomía"}, "performedDateTime": "2019-03-02",
    }, doctor)  # fmt: skip
    ids["pressure"] = await write(client, vital(curp, "2026-11-20T10:00:00Z", 138), doctor)
    ids["smoking"] = await write(client, {
        "resourceType": "Observation", "status": "final", "subject": me,
        "category": [{"coding": [{"system": CATEGORY, "code": "social-history"}]}],
        "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
        "valueCodeableConcept": {"text": "Nunca ha fumado"},
    }, doctor)  # fmt: skip
    return ids


# --- the database tests ---------------------------------------------------------------------


@pytest.mark.db
async def test_the_summary_puts_the_record_in_its_sections(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    ids = await full_record(client, curp, doctor)
    bundle = checked(await client.get(f"/fhir/Patient/{curp}/$summary", headers=doctor))

    base = "http://test/fhir"
    composition = bundle["entry"][0]["resource"]
    assert composition["subject"]["reference"] == f"{base}/Patient/{curp}"
    assert bundle["entry"][1] == {
        "fullUrl": f"{base}/Patient/{curp}",
        "resource": (await client.get(f"/fhir/Patient/{curp}", headers=doctor)).json(),
    }
    author = resolve(bundle, bundle["entry"][0]["fullUrl"], composition["author"][0]["reference"])
    assert author is not None
    assert author["resourceType"] == "Device"
    found = sections(bundle)
    assert list(found) == [*REQUIRED, "11369-6", "30954-2", "47519-4", "8716-3", "11348-0"]

    def ids_in(code: str) -> list[str]:
        return [r["id"] for r in entries_of(bundle, found[code])]

    assert ids_in("11450-4") == [ids["diabetes"]]
    assert ids_in("11348-0") == [ids["asthma"]]  # resolved: a past problem
    assert ids_in("48765-2") == [ids["allergy"]]
    assert ids_in("10160-0") == [ids["metformin"]]
    assert ids_in("11369-6") == [ids["vaccine"]]
    assert sorted(ids_in("30954-2")) == sorted([ids["hba1c"], ids["report"]])
    assert ids_in("47519-4") == [ids["appendix"]]
    assert ids_in("8716-3") == [ids["pressure"]]
    for section in found.values():
        assert rows(section) == len(section["entry"])
    assert "E11.9" in narrative(found["11450-4"])
    assert "activo" in narrative(found["11450-4"])
    assert "Penicilina" in narrative(found["48765-2"])
    assert "alta" in narrative(found["48765-2"])
    assert "1 tableta cada 12 horas" in narrative(found["10160-0"])
    assert "Sistólica: 138 mmHg" in narrative(found["8716-3"])
    assert "Control glucémico insuficiente" in narrative(found["30954-2"])
    assert f"IMSS · {IMSS_UNIT}" in narrative(found["11450-4"])  # where it came from
    # The Encounter the diagnosis refers to is in the Bundle, though in no section.
    in_bundle = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    assert f"Encounter/{ids['encounter']}" in in_bundle
    # A mistaken entry and an observation the IPS puts in no section of ours stay out.
    assert f"Condition/{ids['mistake']}" not in in_bundle
    assert f"Observation/{ids['smoking']}" not in in_bundle
    # The person reads their own summary.
    me = token_for(Role.CITIZEN, curp=curp)
    mine = checked(await client.get(f"/fhir/Patient/{curp}/$summary", headers=me))
    assert [e["fullUrl"] for e in mine["entry"][1:]] == [e["fullUrl"] for e in bundle["entry"][1:]]


@pytest.mark.db
async def test_an_empty_record_still_has_problems_allergies_and_medications(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    bundle = checked(await client.get(f"/fhir/Patient/{curp}/$summary", headers=doctor))
    found = sections(bundle)
    assert list(found) == REQUIRED
    for section in found.values():
        assert "entry" not in section
        assert section["emptyReason"]["coding"][0] == {
            "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
            "code": "unavailable", "display": "Unavailable",
        }  # fmt: skip
        assert narrative(section).startswith("No hay")
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == [
        "Composition", "Patient", "Device",
    ]  # fmt: skip


@pytest.mark.db
async def test_the_summary_is_refused_and_recorded_as_everything_is(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    await cared_for(client, curp, imss)
    await write(client, condition(curp), imss)

    refused = await client.get(f"/fhir/Patient/{curp}/$summary", headers=issste)
    assert refused.status_code == 403
    everything = await client.get(f"/fhir/Patient/{curp}/$everything", headers=issste)
    assert everything.status_code == 403
    assert outcome(refused) == outcome(everything)
    verifier = await client.get(f"/fhir/Patient/{curp}/$summary", headers=token_for(Role.VERIFIER))
    assert verifier.status_code == 403
    nobody = await anonymous.get(f"/fhir/Patient/{curp}/$summary", headers={"Authorization": ""})
    assert nobody.status_code == 401
    assert outcome(nobody)["issue"][0]["code"] == "login"
    someone_else = token_for(Role.CITIZEN, curp=await patient(client))
    assert (
        await client.get(f"/fhir/Patient/{curp}/$summary", headers=someone_else)
    ).status_code == 403

    assert (await client.get(f"/fhir/Patient/{curp}/$summary", headers=imss)).status_code == 200
    odd = await client.get(f"/fhir/Patient/{curp}/$summary?profile=x", headers=imss)
    assert odd.status_code == 400
    assert "profile" in outcome(odd)["issue"][0]["diagnostics"]
    # A machine client gets only the types its scopes name, and needs no care relationship.
    app_tokens: TokenService = client._transport.app.state.tokens  # type: ignore[attr-defined]
    his = Principal(
        "client:his", "his.hospital", Role.CLIENT, 2,
        scopes=frozenset({"system/Patient.read", "system/AllergyIntolerance.read"}),
    )  # fmt: skip
    machine = {"Authorization": f"Bearer {app_tokens.issue(his)}"}
    scoped = sections(checked(await client.get(f"/fhir/Patient/{curp}/$summary", headers=machine)))
    assert "entry" not in scoped["11450-4"]  # the Condition is there, but not for this client
    nobody_here = await client.get("/fhir/Patient/XEXX010101HNEXXXA4/$summary", headers=machine)
    assert nobody_here.status_code == 404
    assert outcome(nobody_here)["issue"][0]["code"] == "not-found"

    me = token_for(Role.CITIZEN, curp=curp)
    log = (await client.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    summaries = [e for e in log if e["action"] == "records:Patient:summary"]
    assert {(e["actor"], e["outcome"]) for e in summaries} == {
        ("medico.issste", "denied"),
        ("verifier.prueba", "denied"),
        ("citizen.prueba", "denied"),
        ("medica.imss", "success"),
        ("his.hospital", "success"),
    }
    allowed = next(e for e in summaries if e["actor"] == "medica.imss")
    assert allowed["institution_code"] == 2
    assert allowed["purpose"]  # the basis it was read on (the care relationship)


@pytest.mark.db
async def test_a_restricted_diagnosis_stays_out_of_another_institutions_summary(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    for doctor in (imss, issste):
        await cared_for(client, curp, doctor)
    depression = await write(client, condition(curp, "F32.9"), imss)
    prescription = await write(client, {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": f"Patient/{curp}"},
        "medicationCodeableConcept": {"text": "Sertralina 50 mg"},
        "reasonReference": [{"reference": f"Condition/{depression}"}],
    }, imss)  # fmt: skip
    me = token_for(Role.CITIZEN, curp=curp)

    async def summary_for(headers: dict[str, str]) -> dict[str, Any]:
        return checked(await client.get(f"/fhir/Patient/{curp}/$summary", headers=headers))

    before = await summary_for(issste)  # nothing restricted yet
    assert [r["id"] for r in entries_of(before, sections(before)["11450-4"])] == [depression]
    done = await client.put(
        f"/api/v1/persons/{curp}/record-restrictions", json={"categories": ["mental_health"]},
        headers=me,
    )  # fmt: skip
    assert done.status_code == 200, done.text

    # The prescription still cites the diagnosis (stored resources are served as written),
    # but the diagnosis itself is neither followed nor listed.
    cited = frozenset({f"Condition/{depression}"})
    hidden = checked(
        await client.get(f"/fhir/Patient/{curp}/$summary", headers=issste), dangling=cited
    )
    assert "F32.9" not in orjson.dumps(hidden).decode()
    assert all(e["resource"]["id"] != depression for e in hidden["entry"])
    problems = sections(hidden)["11450-4"]
    assert "entry" not in problems
    assert problems["emptyReason"]["coding"][0]["code"] == "unavailable"  # as if never recorded
    medications = sections(hidden)["10160-0"]
    assert [r["id"] for r in entries_of(hidden, medications)] == [prescription]
    for whom in (imss, me):
        whole = await summary_for(whom)
        assert [r["id"] for r in entries_of(whole, sections(whole)["11450-4"])] == [depression]


@pytest.mark.db
async def test_a_long_section_shows_its_most_recent_entries_and_says_so(
    client: httpx.AsyncClient, token_for: TokenFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    written = {}
    for day, systolic in (("2026-11-03", 150), ("2026-11-01", 130), ("2026-11-02", 140)):
        written[day] = await write(client, vital(curp, day, systolic), doctor)
    monkeypatch.setattr(summary, "SECTION_LIMIT", 2)
    bundle = checked(await client.get(f"/fhir/Patient/{curp}/$summary", headers=doctor))
    vitals = sections(bundle)["8716-3"]
    assert [r["id"] for r in entries_of(bundle, vitals)] == [
        written["2026-11-03"], written["2026-11-02"],
    ]  # fmt: skip
    assert "2 entradas más recientes de 3" in narrative(vitals)
    assert written["2026-11-01"] not in orjson.dumps(bundle).decode()


@pytest.mark.db
async def test_only_json_formats_are_served(client: httpx.AsyncClient, token_for: TokenFor) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    for url in (
        f"/fhir/Patient/{curp}/$summary?_format=xml",
        "/fhir/metadata?_format=application/fhir%2Bxml",
        f"/fhir/Condition?patient={curp}&_format=text/turtle",
        "/fhir/metadata?_format=json&_format=xml",
    ):
        refused = await client.get(url, headers=doctor)
        assert refused.status_code == 406, (url, refused.text)
        issue = outcome(refused)["issue"][0]
        assert issue["expression"] == ["_format"]
        assert "_format" in issue["diagnostics"]
        assert "JSON" in issue["diagnostics"]
    json_forms = ["json", "application/json", "application/fhir%2Bjson", "application/fhir+json"]
    for value in [*json_forms, "application/fhir%2Bjson;%20fhirVersion=4.0"]:
        answer = await client.get(f"/fhir/metadata?_format={value}", headers=doctor)
        assert answer.status_code == 200, (value, answer.text)
    summary_json = await client.get(
        f"/fhir/Patient/{curp}/$summary", params={"_format": "json"}, headers=doctor
    )
    checked(summary_json)
    # A refused write writes nothing.
    xml_write = await client.post(
        "/fhir/Condition?_format=xml", json=condition(curp), headers=doctor
    )
    assert xml_write.status_code == 406
    listed = (await client.get(f"/fhir/Condition?patient={curp}", headers=doctor)).json()
    assert listed["total"] == 0


@pytest.mark.db
async def test_the_capability_statement_declares_summary(client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    patient_resource = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    operations = {o["name"]: o["definition"] for o in patient_resource["operation"]}
    assert operations["summary"] == "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"
    assert "everything" in operations


# --- the pure parts -------------------------------------------------------------------------


def _status(kind: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": kind, **fields}


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


@pytest.mark.parametrize(
    ("doc", "section"),
    [
        (_status("Condition", clinicalStatus=_concept(CLINICAL, "active")), "problems"),
        (_status("Condition"), "problems"),
        (_status("Condition", clinicalStatus=_concept(CLINICAL, "remission")), "past_problems"),
        (_status("Condition", verificationStatus=_concept(VERIFICATION, "refuted")), None),
        (_status("AllergyIntolerance"), "allergies"),
        (_status("AllergyIntolerance",
                 verificationStatus=_concept(VERIFICATION, "entered-in-error")), None),
        (_status("MedicationStatement", status="active"), "medications"),
        (_status("MedicationRequest", status="draft"), None),
        (_status("Immunization", status="entered-in-error"), None),
        (_status("Immunization", status="completed"), "immunizations"),
        (_status("Procedure", status="completed"), "procedures"),
        (_status("DiagnosticReport", status="cancelled"), None),
        (_status("DiagnosticReport", status="final"), "results"),
        (_status("Observation", category=[_concept(CATEGORY, "imaging")]), "results"),
        (_status("Observation", category=[_concept(CATEGORY, "vital-signs")]), "vital_signs"),
        (_status("Observation", category=[_concept("urn:other", "vital-signs")]), None),
        (_status("Observation", category=[_concept(CATEGORY, "survey")]), None),
        (_status("Encounter", status="finished"), None),
    ],
)  # fmt: skip
def test_each_entry_goes_to_its_section(doc: dict[str, Any], section: str | None) -> None:
    assert summary.section_of(doc) == section


def test_narratives_escape_what_the_record_says() -> None:
    doc = {
        "resourceType": "AllergyIntolerance", "id": "x", "criticality": "low",
        "code": {"text": "<script>alert('x')</script> & co"},
    }  # fmt: skip
    allergies = next(s for s in summary.SECTIONS if s.key == "allergies")
    built = summary._section("http://h/fhir", allergies, [doc], 0)
    div = ET.fromstring(built["text"]["div"])
    assert div.find(f".//{XHTML}script") is None
    assert "<script>alert('x')</script> & co" in "".join(div.itertext())
    assert "baja" in "".join(div.itertext())


@pytest.mark.db
async def test_a_medication_named_by_reference_comes_with_the_summary_and_is_read(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A MedicationRequest that names its drug by a Medication (kept, in nobody's record):
    the Medication was left out of the document (only searchable types were followed), so
    the reference resolved to nothing and the narrative showed `Medication/<uuid>`."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    drug = await write(client, {
        "resourceType": "Medication",
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                             "code": "860975", "display": "Metformina 500 mg"}]},
    }, doctor)  # fmt: skip
    await write(client, {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": f"Patient/{curp}"},
        "medicationReference": {"reference": f"Medication/{drug}"},
        "authoredOn": "2026-11-20",
    }, doctor)  # fmt: skip
    bundle = checked(await client.get(f"/fhir/Patient/{curp}/$summary", headers=doctor))
    assert f"Medication/{drug}" in {
        f"{e['resource']['resourceType']}/{e['resource'].get('id')}" for e in bundle["entry"]
    }
    medications = narrative(sections(bundle)["10160-0"])
    assert "Metformina 500 mg" in medications
    assert f"Medication/{drug}" not in medications
    request = next(e["resource"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "MedicationRequest")  # fmt: skip
    assert "display" not in request["medicationReference"]  # the entry goes out as kept


@pytest.mark.db
async def test_everything_for_a_client_carries_the_types_read_by_id_too(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A machine client with system/*.read got only the searchable types in $everything;
    a CarePlan of the person (kept, read by id) was left out, though a clinician saw it."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    plan = await write(client, {
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": f"Patient/{curp}"},
    }, doctor)  # fmt: skip
    system = token_for(Role.CLIENT, scopes="system/*.read", username="sistema.hospital")
    for who in (doctor, system):
        found = await client.get(f"/fhir/Patient/{curp}/$everything", headers=who)
        assert found.status_code == 200, found.text
        assert plan in {e["resource"].get("id") for e in found.json()["entry"]}
    narrow = token_for(Role.CLIENT, scopes="system/Condition.read", username="sistema.lab")
    limited = await client.get(f"/fhir/Patient/{curp}/$everything", headers=narrow)
    assert plan not in {e["resource"].get("id") for e in limited.json().get("entry", [])}


async def test_a_patient_kept_outside_the_registry_has_its_whole_record_read(
    client: httpx.AsyncClient,
) -> None:
    """A Patient a bulk load kept outside the registry is read and searched as any person's
    record: its $everything and $summary answer too (they were a 404 while a read found it)."""
    import json as _json

    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"

    from salud.records import bulk
    from tests.records.test_fhir_examples import loader, machine

    app = client._transport.app  # type: ignore[attr-defined]
    lines = [
        {"resourceType": "Patient", "id": "pat-x", "name": [{"family": "Doe", "given": ["J"]}]},
        {"resourceType": "Condition", "id": "c-x", "subject": {"reference": "Patient/pat-x"},
         "clinicalStatus": {"coding": [{"system": clinical, "code": "active"}]},
         "code": {"text": "asma"}},
    ]  # fmt: skip
    numbered = [(i + 1, _json.dumps(d).encode()) for i, d in enumerate(lines)]
    report = await bulk.import_lines(app.state.sessions, loader(app), numbered, source="t")
    assert report.created == 2, report
    system = machine(app)
    everything = await client.get("/fhir/Patient/pat-x/$everything", headers=system)
    assert everything.status_code == 200, everything.text
    kinds = sorted(e["resource"]["resourceType"] for e in everything.json()["entry"])
    assert kinds == ["Condition", "Patient"]
    document = await client.get("/fhir/Patient/pat-x/$summary", headers=system)
    assert document.status_code == 200, document.text
    composition = document.json()["entry"][0]["resource"]
    assert composition["subject"] == {
        "reference": "http://test/fhir/Patient/pat-x",
        "display": "J Doe",
    }
    gone = await client.get("/fhir/Patient/nadie-x/$summary", headers=system)
    assert gone.status_code == 404


async def test_what_the_record_points_at_comes_with_it(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """An entry that names the institution that served (Organization/inst-2, built from the
    catalog) or a Practitioner (kept in nobody's record): $summary and $everything carry
    them, so that every reference of the document resolves (R4: Patient-everything "SHOULD"
    also return what the record's resources refer to)."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    practitioner = await write(
        client, {"resourceType": "Practitioner", "name": [{"family": "López"}]}, doctor
    )
    encounter = await write(client, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{curp}"},
        "serviceProvider": {"reference": "Organization/inst-2"},
        "participant": [{"individual": {"reference": f"Practitioner/{practitioner}"}}],
    }, doctor)  # fmt: skip
    await write(client, {
        "resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "BCG"},
        "patient": {"reference": f"Patient/{curp}"}, "occurrenceDateTime": "2024-01-02",
        "encounter": {"reference": f"Encounter/{encounter}"},
        "performer": [{"actor": {"reference": "Organization/inst-2"}}],
    }, doctor)  # fmt: skip
    for operation in ("$summary", "$everything"):
        answer = await client.get(f"/fhir/Patient/{curp}/{operation}", headers=doctor)
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        unresolved = {
            ref for e in bundle["entry"] for ref in references(e["resource"])
            if resolve(bundle, e["fullUrl"], ref) is None
        }  # fmt: skip
        assert unresolved == set(), (operation, unresolved)
        kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert "Organization" in kinds, operation
        assert "Practitioner" in kinds, operation
    # The person reads their own record, not what a direct read refuses them: a Practitioner
    # kept under no one (with a phone, say) does not come along in their $everything.
    me = token_for(Role.CITIZEN, curp=curp)
    assert (await client.get(f"/fhir/Practitioner/{practitioner}", headers=me)).status_code == 403
    mine = (await client.get(f"/fhir/Patient/{curp}/$everything", headers=me)).json()
    assert "Practitioner" not in [e["resource"]["resourceType"] for e in mine["entry"]]
    long_id = "x" * 70  # no record has such an id: not found (not a 422 from the audit log)
    assert (
        await client.get(f"/fhir/Patient/{long_id}/$everything", headers=doctor)
    ).status_code == 404
