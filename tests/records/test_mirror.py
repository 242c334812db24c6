"""Organization, Location and Coverage mirror the institutions, the CLUES catalog and the
registry's affiliations (records/mirror.py, records/mirrored.py): read and search, the same
access rules and audit as the person's data for Coverage, writes refused with 405, references
from clinical resources resolved against the mirror, and real FHIR clients reading them."""

from __future__ import annotations

import asyncio
import csv
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhirpy import AsyncFHIRClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.facilities import service as facilities
from salud.facilities.gazetteer import Gazetteer
from salud.facilities.hours import is_open
from salud.facilities.institutions import INSTITUTIONS
from salud.identity.catalogs import NON_INSTITUTION_CODES, affiliation_catalog
from salud.records.mirror import (
    CLUES_SYSTEM,
    DGIS_SYSTEM,
    MEMBER_SYSTEM,
    Entitlement,
    coverage,
    coverage_id,
    hours_of_operation,
    parse_coverage_id,
)
from salud.records.mirrored import directory
from salud.records.models import FhirResource
from tests.conftest import TokenFor
from tests.factories.persons import person_doc
from tests.records.test_fhir_api import IMSS_UNIT, ISSSTE_UNIT, cared_for, clinician, outcome

pytestmark = pytest.mark.db
Sessions = async_sessionmaker[AsyncSession]
SAMPLE = "ESTABLECIMIENTO_SALUD_202501_hidalgo_imb_sample.csv"
OTHERS = "clues_other_institutions_7states.csv"
HOURS = "clues_national_horarios_202604.csv"
IMSS_UNITS = ("HGIMS000012", "HGIMS000024")  # UMF 16 Actopan, UMF 15 Apan (Hidalgo)
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def model(doc: dict[str, Any]) -> Any:
    return get_fhir_model_class(doc["resourceType"]).model_validate(doc)


def _real_rows(source: Path, target: Path, keys: tuple[str, ...]) -> Path:
    """The header and the rows of these CLUES keys, copied from a real catalog file."""
    with source.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    with target.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *(r for r in rows[1:] if r[0] in keys)])
    return target


@pytest.fixture(scope="module")
def gazetteer(shared_data: Path) -> Gazetteer:
    return Gazetteer.load(shared_data / "inegi")


@pytest.fixture
async def catalog(
    sessions: Sessions, shared_data: Path, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    """The real Hidalgo IMSS-Bienestar sample (512 units), two real IMSS units of Hidalgo and
    the real national hours of one unit of each."""
    clues = shared_data / "clues"
    await facilities.import_file(sessions, clues / SAMPLE, gazetteer=gazetteer)
    others = _real_rows(clues / OTHERS, tmp_path / OTHERS, IMSS_UNITS)
    await facilities.import_file(sessions, others, gazetteer=gazetteer)
    hours = _real_rows(clues / HOURS, tmp_path / HOURS, ("HGIMB000011", IMSS_UNITS[0]))
    await facilities.import_file(sessions, hours, gazetteer=gazetteer)


async def _person(client: httpx.AsyncClient, **extra: Any) -> str:
    affiliations = [
        {"institution_code": 2, "member_number": "12345678901", "regime": "ordinario",
         "valid_from": "2015-03-01"},
        {"institution_code": 3, "member_number": "ABC/123", "valid_from": "2010-01-01",
         "valid_to": "2014-12-31", "status": "ended"},
    ]  # fmt: skip
    doc = person_doc(affiliations=affiliations, **extra)
    answer = await client.post("/api/v1/persons", json=doc)
    assert answer.status_code == 201, answer.text
    curp: str = doc["curp"]
    return curp


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == mode]


# --- Organization ---------------------------------------------------------------------------


async def test_organizations_are_the_institutions(client: httpx.AsyncClient) -> None:
    imss = await client.get("/fhir/Organization/inst-2")
    assert imss.status_code == 200, imss.text
    assert imss.headers["etag"] == 'W/"1"'
    org = imss.json()
    model(org)
    assert org["identifier"] == [
        {"use": "official", "system": DGIS_SYSTEM, "value": "2"},
        {"system": "https://salud.gob.mx/fhir/sid/institucion-clues", "value": "IMS"},
    ]
    assert org["name"] == INSTITUTIONS["IMS"]
    assert org["active"] is True
    assert "IMSS" in org["alias"]
    assert [t["coding"][0]["code"] for t in org["type"]] == ["pay", "prov"]
    ssa = (await client.get("/fhir/Organization/inst-SSA")).json()  # units, no affiliates
    assert [t["coding"][0]["code"] for t in ssa["type"]] == ["prov"]
    assert (await client.get("/fhir/Organization/inst-13")).json()["active"] is False  # INSABI
    for nothing in ("inst-1", "inst-99", "inst-IMS"):  # NINGUNA; unknown; IMS is inst-2
        answer = await client.get(f"/fhir/Organization/{nothing}")
        assert answer.status_code == 404, nothing
        assert outcome(answer)["issue"][0]["code"] == "not-found"

    every = (await client.get("/fhir/Organization?_count=200")).json()
    model(every)
    payers = {
        f"inst-{c}" for c, e in affiliation_catalog().items() if c not in NON_INSTITUTION_CODES
    }
    providers = {i.fhir_id for i in directory().by_clues.values()}
    assert set(_ids(every)) == payers | providers
    assert every["total"] == len(payers | providers)
    assert len(providers) == len(INSTITUTIONS)  # every CLUES institution, each once
    by_code = await client.get(f"/fhir/Organization?identifier={DGIS_SYSTEM}|3")
    assert _ids(by_code.json()) == ["inst-3"]
    by_letters = await client.get("/fhir/Organization?identifier=IMB")
    assert _ids(by_letters.json()) == ["inst-14"]
    assert _ids((await client.get("/fhir/Organization?name=issste")).json()) == ["inst-3"]
    bienestar = (await client.get("/fhir/Organization?name:contains=bienestar")).json()
    assert set(_ids(bienestar)) == {"inst-10", "inst-13", "inst-14"}
    paged = (await client.get("/fhir/Organization?type=pay&_count=4")).json()
    assert paged["total"] == len(payers)
    assert len(paged["entry"]) == 4
    assert any(link["relation"] == "next" for link in paged["link"])
    odd = await client.get("/fhir/Organization?colour=red&name:fuzzy=x")
    assert odd.status_code == 400
    assert "colour, name:fuzzy" in outcome(odd)["issue"][0]["diagnostics"]


# --- Location -------------------------------------------------------------------------------


@pytest.mark.usefixtures("catalog")
async def test_locations_are_the_clues_units(client: httpx.AsyncClient) -> None:
    answer = await client.get("/fhir/Location/HGIMB000011")
    assert answer.status_code == 200, answer.text
    acatlan = answer.json()
    model(acatlan)
    assert acatlan["identifier"] == [
        {"use": "official", "system": CLUES_SYSTEM, "value": "HGIMB000011"}
    ]
    assert (acatlan["name"], acatlan["status"]) == ("ACATLÁN", "active")
    assert acatlan["position"] == {"longitude": -98.440023, "latitude": 20.144656}
    assert acatlan["address"]["state"] == "HIDALGO"
    assert acatlan["address"]["postalCode"] == "43540"
    assert acatlan["managingOrganization"]["reference"] == "Organization/inst-14"
    assert {"system": "https://salud.gob.mx/fhir/CodeSystem/nivel-atencion", "code": "1",
            "display": "Primer nivel de atención"} in acatlan["type"][-1]["coding"]  # fmt: skip
    # The national hours list: every day, 00:00 to 23:59.
    assert acatlan["hoursOfOperation"] == [
        {"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "allDay": True}
    ]
    version = acatlan["meta"]["versionId"]
    assert answer.headers["etag"] == f'W/"{version}"'
    again = await client.get(f"/fhir/Location/HGIMB000011/_history/{version}")
    assert again.json() == acatlan
    assert (await client.get("/fhir/Location/HGIMB000011/_history/99")).status_code == 404
    history = await client.get("/fhir/Location/HGIMB000011/_history")
    assert history.status_code == 400
    assert "/api/v1/facilities/" in outcome(history)["issue"][0]["diagnostics"]

    actopan = (await client.get(f"/fhir/Location/{IMSS_UNITS[0]}")).json()
    model(actopan)
    assert actopan["managingOrganization"] == {
        "reference": "Organization/inst-2", "display": INSTITUTIONS["IMS"]
    }  # fmt: skip
    assert actopan["hoursOfOperation"] == [{
        "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
        "openingTime": "08:00:00", "closingTime": "20:00:00",
    }]  # fmt: skip
    missing = await client.get("/fhir/Location/HGIMB999999")
    assert missing.status_code == 404

    imss = (await client.get("/fhir/Location?address-state=hidalgo&organization=inst-2")).json()
    model(imss)
    assert _ids(imss) == list(IMSS_UNITS)
    bienestar = (
        await client.get("/fhir/Location?organization=Organization/inst-14&_count=5")
    ).json()
    assert bienestar["total"] == 512  # the whole sample
    assert len(bienestar["entry"]) == 5
    assert any(link["relation"] == "next" for link in bienestar["link"])
    named = (await client.get("/fhir/Location?name=acatl&status=active")).json()
    assert "HGIMB000011" in _ids(named)
    assert all(e["resource"]["name"].startswith("ACATL") for e in named["entry"])
    by_key = await client.get(f"/fhir/Location?identifier={CLUES_SYSTEM}|HGIMB000011")
    assert _ids(by_key.json()) == ["HGIMB000011"]
    wrong_system = await client.get("/fhir/Location?identifier=urn:otro|HGIMB000011")
    assert wrong_system.json()["total"] == 0
    assert (await client.get("/fhir/Location?address-state=DF")).json()["total"] == 0
    assert (await client.get("/fhir/Location?status=inactive")).json()["total"] == 0
    # A value that could only match nothing is refused, naming the parameter.
    for query in ("Location?status=cerrada", "Location?name=a,b", "Organization?active=yes",
                  "Organization?name=", "Location?_id=,HGIMB000011"):  # fmt: skip
        refused = await client.get(f"/fhir/{query}")
        assert refused.status_code == 400, (query, refused.text)
    with_owner = await client.get(
        f"/fhir/Location?_id={IMSS_UNITS[1]},HGIMB000011&_include=Location:organization"
    )
    bundle = with_owner.json()
    model(bundle)
    assert sorted(_ids(bundle)) == ["HGIMB000011", IMSS_UNITS[1]]
    assert _ids(bundle, "include") == ["inst-14", "inst-2"]
    near = await client.get("/fhir/Location?near=20.1|-98.4|10|km")
    assert near.status_code == 400
    assert "near" in outcome(near)["issue"][0]["diagnostics"]


# --- Coverage -------------------------------------------------------------------------------


async def test_an_include_is_a_read_of_its_own_type(client: httpx.AsyncClient) -> None:
    """A system allowed Coverage only gets no Patient or Organization through _include."""
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await _person(client)

    def system(*scopes: str) -> dict[str, str]:
        principal = Principal(f"client:{scopes[0]}", "his.coberturas", Role.CLIENT, 3,
                              scopes=frozenset(scopes))  # fmt: skip
        return {"Authorization": f"Bearer {app.state.tokens.issue(principal)}"}

    narrow = system("system/Coverage.read")
    base = f"/fhir/Coverage?patient={curp}"
    assert (await client.get(base, headers=narrow)).status_code == 200
    for include in ("Coverage:beneficiary", "Coverage:patient", "Coverage:payor"):
        answer = await client.get(f"{base}&_include={include}", headers=narrow)
        assert answer.status_code == 403, (include, answer.text)
    located = "/fhir/Location?_id=HGIMB000011&_include=Location:organization"
    assert (await client.get(located, headers=system("system/Location.read"))).status_code == 403
    wide = system("system/*.read")  # what a read of the Patient itself needs
    both = await client.get(f"{base}&_include=Coverage:beneficiary", headers=wide)
    assert both.status_code == 200, both.text
    assert [e["resource"]["id"] for e in both.json()["entry"]
            if e["search"]["mode"] == "include"] == [curp]  # fmt: skip


async def test_coverage_mirrors_the_affiliations_under_the_persons_rules(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await _person(client)
    me = token_for(Role.CITIZEN, curp=curp)
    mine = await client.get(f"/fhir/Coverage?patient={curp}", headers=me)
    assert mine.status_code == 200, mine.text
    bundle = mine.json()
    model(bundle)
    assert bundle["total"] == 2
    imss_id, issste_id = f"{curp}-2-12345678901", f"{curp}-3-ABC.123"
    assert _ids(bundle) == [imss_id, issste_id]
    imss, issste = (e["resource"] for e in bundle["entry"])
    for doc in (imss, issste):
        model(doc)
        assert doc["beneficiary"] == {"reference": f"Patient/{curp}"}
    assert (imss["status"], issste["status"]) == ("active", "cancelled")
    assert imss["payor"][0]["reference"] == "Organization/inst-2"
    assert imss["period"] == {"start": "2015-03-01"}
    assert imss["class"][0]["value"] == "ordinario"
    assert issste["period"] == {"start": "2010-01-01", "end": "2014-12-31"}
    assert issste["extension"][0]["valueCode"] == "ended"
    read = await client.get(f"/fhir/Coverage/{issste_id}", headers=me)
    assert read.status_code == 200, read.text
    assert read.json()["identifier"][0]["value"] == "ABC/123"  # "/" in the member number
    assert read.json()["identifier"][0]["system"] == f"{MEMBER_SYSTEM}/3"

    active = (await client.get(f"/fhir/Coverage?patient={curp}&status=active", headers=me)).json()
    assert _ids(active) == [imss_id]
    payor = f"/fhir/Coverage?beneficiary=Patient/{curp}&payor=Organization/inst-3"
    assert _ids((await client.get(payor, headers=me)).json()) == [issste_id]
    included = await client.get(
        f"/fhir/Coverage?patient={curp}&_include=Coverage:payor&_include=Coverage:beneficiary",
        headers=me,
    )
    assert sorted(_ids(included.json(), "include")) == [curp, "inst-2", "inst-3"]
    nobody = await client.get("/fhir/Coverage?status=active", headers=me)
    assert nobody.status_code == 400
    for query in ("patient=", f"patient={curp}&status=vigente"):
        assert (await client.get(f"/fhir/Coverage?{query}", headers=me)).status_code == 400
    assert (await client.get(f"/fhir/Coverage/{curp}-5", headers=me)).status_code == 404

    # A clinician with no basis for this person is refused, and the refusal is audited.
    issste_doctor = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    refused = await client.get(f"/fhir/Coverage/{imss_id}", headers=issste_doctor)
    assert refused.status_code == 403
    assert outcome(refused)["issue"][0]["code"] == "forbidden"
    listed = await client.get(f"/fhir/Coverage?patient={curp}", headers=issste_doctor)
    assert listed.status_code == 403
    await cared_for(client, curp, issste_doctor)  # the person arrives at the ISSSTE unit
    allowed = await client.get(f"/fhir/Coverage/{imss_id}", headers=issste_doctor)
    assert allowed.status_code == 200, allowed.text
    log = (await client.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    seen = [
        (e["action"], e["outcome"], e["purpose"])
        for e in log
        if e["actor"] == "medico.issste" and "Coverage" in e["action"]
    ]
    assert set(seen) == {
        ("records:Coverage:read", "denied", None),
        ("records:Coverage:search", "denied", None),
        ("records:Coverage:read", "success", "care"),
    }

    # Another person's coverage stays closed to the citizen.
    other = await _person(client)
    theirs = await client.get(f"/fhir/Coverage/{other}-2-12345678901", headers=me)
    assert theirs.status_code == 403

    # The mirror follows the registry: a change of affiliations is the Coverage's change.
    change = {"affiliations": [{"institution_code": 4, "valid_from": "2020-01-01"}],
              "reason": "cambio de empleo"}  # fmt: skip
    patched = await client.patch(
        f"/api/v1/persons/{curp}", json=change, headers={"If-Match": 'W/"1"'}
    )
    assert patched.status_code == 200, patched.text
    now = (await client.get(f"/fhir/Coverage?patient={curp}", headers=me)).json()
    assert _ids(now) == [f"{curp}-4"]
    assert now["entry"][0]["resource"]["meta"]["versionId"] == "2"
    assert (await client.get(f"/fhir/Coverage/{imss_id}", headers=me)).status_code == 404
    everything = (await client.get(f"/fhir/Patient/{curp}/$everything", headers=me)).json()
    model(everything)
    kinds = [e["resource"]["resourceType"] for e in everything["entry"]]
    assert kinds == ["Patient", "Coverage", "Organization"]  # the payor comes along
    assert everything["total"] == 2


# --- writes and references ------------------------------------------------------------------


async def test_writes_are_refused_with_405_saying_where_to_change(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await _person(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    org = {"resourceType": "Organization", "name": "Hospital de prueba"}
    place = {"resourceType": "Location", "id": "HGIMB000011", "name": "Otra"}
    cover = {"resourceType": "Coverage", "id": f"{curp}-2", "status": "active",
             "beneficiary": {"reference": f"Patient/{curp}"},
             "payor": [{"reference": "Organization/inst-2"}]}  # fmt: skip
    attempts = [
        ("POST", "/fhir/Organization", org, "catálogos de instituciones"),
        ("PUT", "/fhir/Location/HGIMB000011", place, "salud facilities import"),
        ("PUT", f"/fhir/Coverage/{curp}-2", cover, "/api/v1/persons/{CURP}"),
        ("DELETE", "/fhir/Location/HGIMB000011", None, "catálogo CLUES"),
        ("DELETE", f"/fhir/Coverage/{curp}-2", None, "padrón"),
    ]
    for method, url, body, where in attempts:
        answer = await client.request(method, url, json=body, headers=doctor)
        assert answer.status_code == 405, (method, url, answer.text)
        assert answer.headers["allow"] == "GET"
        issue = outcome(answer)["issue"][0]
        assert issue["code"] == "not-supported"
        assert "solo lectura" in issue["diagnostics"]
        assert where in issue["diagnostics"]
    conditional = await client.post(
        "/fhir/Organization", json=org, headers={**doctor, "If-None-Exist": "identifier=IMS"}
    )
    assert conditional.status_code == 405
    transaction = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{"resource": org, "request": {"method": "POST", "url": "Organization"}}],
    }  # fmt: skip
    refused = await client.post("/fhir", json=transaction, headers=doctor)
    assert refused.status_code == 405
    assert "entrada 0" in outcome(refused)["issue"][0]["diagnostics"]


def _encounter(curp: str, place: str, provider: str = "Organization/inst-14") -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{curp}"},
        "serviceProvider": {"reference": provider},
        "location": [{"location": {"reference": place}}],
    }  # fmt: skip


@pytest.mark.usefixtures("catalog")
async def test_clinical_references_resolve_against_the_mirror(
    client: httpx.AsyncClient, token_for: TokenFor, sessions: Sessions
) -> None:
    curp = await _person(client)
    doctor = clinician(token_for, 14, "HGIMB000011", "medico.acatlan")
    await cared_for(client, curp, doctor)
    ok = await client.post("/fhir/Encounter", json=_encounter(curp, "Location/HGIMB000011"),
                           headers=doctor)  # fmt: skip
    assert ok.status_code == 201, ok.text
    for place, provider, wrong in [
        ("Location/HGIMB999999", "Organization/inst-14", "Location/HGIMB999999"),
        ("Location/HGIMB000011", "Organization/inst-99", "Organization/inst-99"),
    ]:
        refused = await client.post(
            "/fhir/Encounter", json=_encounter(curp, place, provider), headers=doctor
        )
        assert refused.status_code == 422, refused.text
        issue = outcome(refused)["issue"][0]
        assert issue["code"] == "not-found"
        assert wrong in issue["diagnostics"]
    prescription = {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": f"Patient/{curp}"},
        "medicationCodeableConcept": {"text": "Metformina 850 mg"},
        "insurance": [{"reference": f"Coverage/{curp}-2-12345678901"}],
    }  # fmt: skip
    covered = await client.post("/fhir/MedicationRequest", json=prescription, headers=doctor)
    assert covered.status_code == 201, covered.text
    prescription["insurance"] = [{"reference": f"Coverage/{curp}-6"}]
    uncovered = await client.post("/fhir/MedicationRequest", json=prescription, headers=doctor)
    assert uncovered.status_code == 422
    assert f"Coverage/{curp}-6" in outcome(uncovered)["issue"][0]["diagnostics"]
    transaction = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{"fullUrl": "urn:uuid:0b3b6c6e-7c8f-4a53-9d1e-3f3a2d7c1a10",
                   "resource": _encounter(curp, "Location/HGIMB000011"),
                   "request": {"method": "POST", "url": "Encounter"}}],
    }  # fmt: skip
    done = await client.post("/fhir", json=transaction, headers=doctor)
    assert done.status_code == 200, done.text

    # Another id of a mirrored type names a resource kept by a bulk load (the official
    # examples' Organization/hl7): read by id, referred to, never listed by a search.
    kept = {"resourceType": "Organization", "id": "hl7", "name": "Health Level Seven"}
    async with sessions() as session, session.begin():
        session.add(FhirResource(
            resource_type="Organization", fhir_id="hl7", version_id=1,
            last_updated=datetime.now(UTC), deleted=False, person_curp=None,
            institution_code=None, clues=None, author="carga", sensitivity="",
            content=orjson.dumps(kept).decode(),
        ))  # fmt: skip
    assert (await client.get("/fhir/Organization/hl7", headers=doctor)).json() == kept
    elsewhere = await client.post(
        "/fhir/Encounter", json=_encounter(curp, "Location/HGIMB000011", "Organization/hl7"),
        headers=doctor,
    )  # fmt: skip
    assert elsewhere.status_code == 201, elsewhere.text
    listed = (await client.get("/fhir/Organization?name=health", headers=doctor)).json()
    assert listed["total"] == 0


async def test_the_capability_statement_tells_the_truth(client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    model(statement)
    kinds = {r["type"]: r for r in statement["rest"][0]["resource"]}
    params = {
        "Organization": {"_id", "identifier", "name", "type", "active"},
        "Location": {"_id", "identifier", "name", "address-state", "organization", "status"},
        "Coverage": {"_id", "identifier", "patient", "beneficiary", "status", "payor"},
    }
    for kind, names in params.items():
        entry = kinds[kind]
        assert [i["code"] for i in entry["interaction"]] == ["read", "search-type"]
        assert {p["name"] for p in entry["searchParam"]} == names
        assert "solo lectura" in entry["documentation"]
    assert kinds["Location"]["searchInclude"] == ["Location:organization"]
    assert not any(
        source.startswith(("Coverage:", "Location:", "Organization:"))
        for r in kinds.values()
        for source in r.get("searchRevInclude", [])
    )
    # Only what can point at the type is claimed: a Condition is named by nothing's
    # `patient`, an Encounter by the others' `encounter`.
    assert "Encounter:patient" not in kinds["Condition"]["searchRevInclude"]
    assert "Condition:encounter" in kinds["Encounter"]["searchRevInclude"]


# --- real clients ---------------------------------------------------------------------------


def _fhirclient_reads(base: str, token: str) -> tuple[str, str, str]:
    """SMART's fhirclient (its own R4 models) reads a Location and an Organization."""
    from fhirclient import client as smart
    from fhirclient.models.location import Location
    from fhirclient.models.organization import Organization

    fhir = smart.FHIRClient(settings={"app_id": "salud-pruebas", "api_base": base})
    fhir.server.session.headers["Authorization"] = token
    assert fhir.server.capabilityStatement.fhirVersion == "4.0.1"
    unit = Location.read("HGIMB000011", fhir.server)
    owner = Organization.read(unit.managingOrganization.reference.split("/")[1], fhir.server)
    return unit.name, unit.identifier[0].system, owner.identifier[0].value


@pytest.mark.usefixtures("catalog")
async def test_fhir_clients_read_the_mirror_from_the_live_server(
    client: httpx.AsyncClient, token_for: TokenFor, live_server: str
) -> None:
    curp = await _person(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    name, system, code = await asyncio.to_thread(
        _fhirclient_reads, f"{live_server}/fhir", doctor["Authorization"]
    )
    assert (name, system, code) == ("ACATLÁN", CLUES_SYSTEM, "14")
    fhir = AsyncFHIRClient(f"{live_server}/fhir", authorization=doctor["Authorization"])
    coverages = await fhir.resources("Coverage").search(patient=curp, status="active").fetch()
    assert [c.id for c in coverages] == [f"{curp}-2-12345678901"]
    imss = await coverages[0]["payor"][0].to_resource()
    assert imss["name"] == INSTITUTIONS["IMS"]
    units = await fhir.resources("Location").search(organization="inst-2").fetch_all()
    assert sorted(u.id for u in units) == list(IMSS_UNITS)


# --- the pure builders (Hypothesis) ---------------------------------------------------------

_CURPS = st.from_regex(r"[A-Z]{4}[0-9]{6}[HMX][A-Z]{5}[A-Z0-9][0-9]", fullmatch=True)
_MEMBERS = st.none() | st.from_regex(r"[A-Za-z0-9\-/]{1,30}", fullmatch=True)


@given(curp=_CURPS, code=st.integers(0, 99), member=_MEMBERS)
def test_a_coverage_id_is_a_fhir_id_that_reads_back_to_the_affiliation(
    curp: str, code: int, member: str | None
) -> None:
    fhir_id = coverage_id(curp, code, member)
    assert FHIR_ID.fullmatch(fhir_id)
    assert parse_coverage_id(fhir_id) == (curp, code, member)


@given(text=st.text(max_size=40))
def test_any_other_text_is_no_coverage_id_or_reads_back_to_itself(text: str) -> None:
    key = parse_coverage_id(text)
    assert key is None or coverage_id(*key) == text


_TIMES = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 59])
) | st.just("24:00")


@settings(max_examples=150, deadline=None)
@given(
    opening=_TIMES, closing=_TIMES,
    days=st.none() | st.lists(st.booleans(), min_size=7, max_size=7),
    blocks=st.none() | st.integers(0, 3),
    moment=st.datetimes(datetime(2026, 1, 5), datetime(2026, 1, 12), timezones=st.just(UTC)),
)  # fmt: skip
def test_hours_of_operation_say_what_is_open_says(
    opening: str, closing: str, days: list[bool] | None, blocks: int | None, moment: datetime
) -> None:
    """The FHIR hours validate, and wherever they are definite (a window within one day)
    they agree with the catalog's own `is_open` at every moment."""
    hours = {"days": days, "open": opening, "close": closing, "blocks": blocks}
    slots, notes = hours_of_operation(hours)
    place: dict[str, Any] = {"resourceType": "Location", "hoursOfOperation": slots}
    if notes:
        place["availabilityExceptions"] = "; ".join(notes)
    model(place)
    if days is None or not any(days):
        assert slots == []
        return
    (slot,) = slots
    assert slot["daysOfWeek"] == [d for d, o in zip(_DAY_CODES, days, strict=True) if o]
    if not slot.get("allDay") and slot["closingTime"] < slot["openingTime"]:
        return  # after midnight: FHIR cannot say it exactly; the notes say it
    minute = moment.hour * 60 + moment.minute
    start = 0 if slot.get("allDay") else _minutes(slot["openingTime"])
    end = 24 * 60 if slot.get("allDay") else _minutes(slot["closingTime"])
    said = _DAY_CODES[moment.weekday()] in slot["daysOfWeek"] and start <= minute < end
    assert said == is_open(hours, moment)


_DAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(text: str) -> int:
    if text == "23:59:59":  # the end of the day
        return 24 * 60
    return int(text[:2]) * 60 + int(text[3:5])


@settings(max_examples=100, deadline=None)
@given(
    curp=_CURPS, code=st.sampled_from([2, 3, 4, 5, 6, 8, 10, 11, 14]), member=_MEMBERS,
    regime=st.none() | st.text(st.characters(categories=["L"]), min_size=1, max_size=20),
    start=st.dates(date(1950, 1, 1), date(2030, 1, 1)),
    length=st.none() | st.integers(0, 20_000),
    status=st.sampled_from(["active", "suspended", "ended"]),
    today=st.dates(date(1950, 1, 1), date(2090, 1, 1)),
)  # fmt: skip
def test_a_coverage_is_valid_r4b_and_active_only_while_in_force(
    curp: str, code: int, member: str | None, regime: str | None, start: date,
    length: int | None, status: str, today: date,
) -> None:  # fmt: skip
    end = None if length is None else start + timedelta(days=length)
    entitlement = Entitlement(code, member, regime, start, end, status)
    payor = directory().by_dgis[code]
    doc = coverage(curp, entitlement, payor, 3, datetime(2026, 1, 1, tzinfo=UTC), today)
    model(doc)
    in_force = status == "active" and (end is None or today <= end)
    assert doc["status"] == ("active" if in_force else "cancelled")
    assert doc["payor"][0]["reference"] == f"Organization/inst-{code}"
    assert parse_coverage_id(doc["id"]) == (curp, code, member)


def test_a_coverage_past_its_end_says_when_time_alone_changed_it() -> None:
    """An active affiliation is a `cancelled` Coverage from the day after `valid_to` with no
    change in the registry: the version stays the registry's, and `lastUpdated` is the
    beginning of that day in Mexico (UTC-6), or the registry's last change if later."""
    changed = datetime(2026, 1, 10, 12, tzinfo=UTC)
    ends = Entitlement(2, "12345678901", None, date(2020, 1, 1), date(2026, 3, 1), "active")
    payor = directory().by_dgis[2]

    def seen(e: Entitlement, today: date, updated: datetime = changed) -> tuple[str, Any]:
        doc = coverage("AAAA100101HDFRRR09", e, payor, 3, updated, today)
        return doc["status"], doc["meta"]

    assert seen(ends, date(2026, 3, 1)) == (  # its last day: in force, as the registry left it
        "active", {"versionId": "3", "lastUpdated": "2026-01-10T12:00:00.000Z"}
    )  # fmt: skip
    assert seen(ends, date(2026, 3, 2)) == (
        "cancelled", {"versionId": "3", "lastUpdated": "2026-03-02T06:00:00.000Z"}
    )  # fmt: skip
    later = datetime(2026, 4, 1, tzinfo=UTC)  # the registry changed the person afterwards
    assert seen(ends, date(2026, 5, 1), later)[1]["lastUpdated"] == "2026-04-01T00:00:00.000Z"
    ended = Entitlement(2, "12345678901", None, date(2020, 1, 1), date(2026, 3, 1), "ended")
    assert seen(ended, date(2026, 5, 1))[1]["lastUpdated"] == "2026-01-10T12:00:00.000Z"
