"""The person restricts sensitive categories to the institution that recorded them."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.records import bulk
from salud.records.sensitivity import HIV, MENTAL, SEXUAL, categories
from salud.records.service import hidden_from
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
from tests.records.test_fhir_bulk_import import importer, ndjson


def test_classification_by_cie10_and_security_labels() -> None:
    def coded(code: str) -> dict[str, object]:
        return {"resourceType": "Condition", "code": {"coding": [{"system": ICD10, "code": code}]}}

    assert categories(coded("F32.9")) == {MENTAL}
    assert categories(coded("B20")) == {HIV}
    assert categories(coded("Z21")) == {HIV}
    assert categories(coded("O80")) == {SEXUAL}
    assert categories(coded("A54.9")) == {SEXUAL}
    assert categories(coded("E11.9")) == frozenset()
    # HIV lab evidence, screening, exposure, counselling (a person who restricted HIV had
    # them shown); HIV in pregnancy is both; sexual abuse; a history of self-harm.
    for code in ("R75X", "R75", "Z11.4", "Z20.6", "Z71.7"):
        assert categories(coded(code)) == {HIV}, code
    assert categories(coded("O98.7")) == {HIV, SEXUAL}
    for code in ("T74.2", "Y05", "Z11.3", "Z20.2", "Z72.5"):
        assert categories(coded(code)) == {SEXUAL}, code
    assert categories(coded("Z91.5")) == {MENTAL}
    assert categories(coded("Z11.5")) == frozenset()  # other screening
    act_code = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    labelled = {
        "resourceType": "Observation",
        "meta": {"security": [{"system": act_code, "code": "HIV"}]},
    }
    assert categories(labelled) == {HIV}
    snomed = [{"system": "http://snomed.info/sct", "code": "F32"}]
    other_system = {"resourceType": "Condition", "code": {"coding": snomed}}
    assert categories(other_system) == frozenset()

    # Data not coded as a diagnosis: a viral load, an HIV diagnosis in SNOMED CT, an
    # antiretroviral or an antidepressant prescribed, a depression scale, a pregnancy test.
    def with_code(kind: str, system: str, code: str) -> dict[str, object]:
        field = "medicationCodeableConcept" if kind == "MedicationRequest" else "code"
        return {"resourceType": kind, field: {"coding": [{"system": system, "code": code}]}}

    loinc, sct, atc = "http://loinc.org", "http://snomed.info/sct", "http://www.whocc.no/atc"
    assert categories(with_code("Observation", loinc, "20447-9")) == {HIV}
    assert categories(with_code("Condition", sct, "86406008")) == {HIV}
    assert categories(with_code("MedicationRequest", atc, "J05AR03")) == {HIV}
    assert categories(with_code("MedicationRequest", atc, "N06AB06")) == {MENTAL}
    assert categories(with_code("Observation", loinc, "44261-6")) == {MENTAL}
    assert categories(with_code("Observation", loinc, "2106-3")) == {SEXUAL}
    assert categories(with_code("Observation", loinc, "8867-4")) == frozenset()  # heart rate
    assert categories(with_code("MedicationRequest", atc, "J05AF05")) == frozenset()  # HBV too


@given(st.sampled_from("ABCDEGHIJKLMNPQRSTUVWY"), st.integers(0, 99), st.integers(0, 9))
def test_codes_outside_the_sensitive_ranges_are_not_sensitive(
    letter: str, number: int, detail: int
) -> None:
    code = f"{letter}{number:02d}.{detail}"
    doc = {"resourceType": "Condition", "code": {"coding": [{"system": ICD10, "code": code}]}}
    sensitive = (
        (letter == "B" and 20 <= number <= 24)
        or (letter == "Z" and (number == 21 or 30 <= number <= 39))
        or (letter == "A" and 50 <= number <= 64)
        or (letter == "N" and 96 <= number <= 98)
        or f"{letter}{number:02d}{detail}".startswith(_SPECIFIC)
    )
    assert bool(categories(doc)) == sensitive


# CIE-10 codes outside those chapters that still say it (the DGIS catalog's).
_SPECIFIC = ("R75", "Z114", "Z206", "Z717", "T742", "Y05", "Z113", "Z202", "Z725", "Z915")


@pytest.mark.db
async def test_restricted_categories_stay_with_the_recording_institution(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    for doctor in (imss, issste):
        await cared_for(client, curp, doctor)
    depression = (await client.post("/fhir/Condition", json=condition(curp, "F32.9"),
                                     headers=imss)).json()  # fmt: skip
    await client.post("/fhir/Condition", json=condition(curp, "E11.9"), headers=imss)
    me = token_for(Role.CITIZEN, curp=curp)

    async def codes(headers: dict[str, str]) -> list[str]:
        answer = await client.get(
            f"/fhir/Condition?patient={curp}&_sort=_lastUpdated", headers=headers
        )
        assert answer.status_code == 200, answer.text
        return [e["resource"]["code"]["coding"][0]["code"] for e in answer.json()["entry"]]

    assert await codes(issste) == ["F32.9", "E11.9"]  # nothing restricted yet
    url = f"/api/v1/persons/{curp}/record-restrictions"
    assert (
        await client.put(url, json={"categories": ["mental_health"]}, headers=issste)
    ).status_code == 403
    bad = await client.put(url, json={"categories": ["astrology"]}, headers=me)
    assert bad.status_code == 422
    assert "categories" in bad.text
    done = await client.put(url, json={"categories": ["mental_health"]}, headers=me)
    assert done.json() == {"categories": ["mental_health"]}
    assert (await client.get(url, headers=me)).json() == {"categories": ["mental_health"]}
    assert await codes(issste) == ["E11.9"]
    assert await codes(imss) == ["F32.9", "E11.9"]
    assert await codes(me) == ["F32.9", "E11.9"]
    direct = await client.get(f"/fhir/Condition/{depression['id']}", headers=issste)
    assert direct.status_code == 403
    # Refused without naming the category, which would itself disclose it.
    assert "restringió" in outcome(direct)["issue"][0]["diagnostics"]
    assert "salud mental" not in outcome(direct)["issue"][0]["diagnostics"]
    log = (await client.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    assert any(e["action"] == "records:Condition:read" and e["outcome"] == "denied" for e in log)
    # Nor can the other institution replace or delete it (which would also make it the
    # entry's recorder, and so the one the restriction keeps it with).
    target = f"/fhir/Condition/{depression['id']}"
    overwrite = {**condition(curp, "F32.9"), "id": depression["id"]}
    for answer in (await client.put(target, json=overwrite, headers=issste),
                   await client.delete(target, headers=issste)):  # fmt: skip
        assert answer.status_code == 403, answer.text
        assert "salud mental" not in outcome(answer)["issue"][0]["diagnostics"]
    kept = await client.get(target, headers=imss)
    assert kept.status_code == 200
    assert kept.json()["meta"]["versionId"] == "1"
    log = (await client.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    refused = {e["action"] for e in log if e["outcome"] == "denied"}
    assert {"records:Condition:update", "records:Condition:delete"} <= refused
    assert (await client.put(url, json={"categories": []}, headers=me)).status_code == 200
    assert await codes(issste) == ["F32.9", "E11.9"]


async def test_an_earlier_version_keeps_its_restriction_in_the_history(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A diagnosis recorded as depression and then recoded: its first version is still a
    mental-health entry, which the history shows only to whom the restriction allows."""
    curp = await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    for doctor in (imss, issste):
        await cared_for(client, curp, doctor)
    me = token_for(Role.CITIZEN, curp=curp)
    url = f"/api/v1/persons/{curp}/record-restrictions"
    assert (
        await client.put(url, json={"categories": ["mental_health"]}, headers=me)
    ).status_code == 200
    first = (await client.post("/fhir/Condition", json=condition(curp, "F32.9"),
                               headers=imss)).json()  # fmt: skip
    recoded = {**condition(curp, "I10"), "id": first["id"]}
    changed = await client.put(f"/fhir/Condition/{first['id']}", json=recoded, headers=imss)
    assert changed.status_code == 200, changed.text

    async def versions(headers: dict[str, str]) -> list[str]:
        answer = await client.get(f"/fhir/Condition/{first['id']}/_history", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] == len(answer.json()["entry"])  # what is withheld too
        return [e["resource"]["code"]["coding"][0]["code"] for e in answer.json()["entry"]]

    assert await versions(issste) == ["I10"]
    assert await versions(imss) == ["I10", "F32.9"]
    assert await versions(me) == ["I10", "F32.9"]
    old = await client.get(f"/fhir/Condition/{first['id']}/_history/1", headers=issste)
    assert old.status_code == 403


def test_only_the_recording_institution_is_exempt() -> None:
    """The one rule behind reads, searches and $export (service.hidden_from)."""

    def caller(institution: int | None) -> Caller:
        principal = Principal("client:x", "x", Role.CLIENT, institution)
        return Caller(principal, None)  # type: ignore[arg-type]

    restricted = {MENTAL}
    assert hidden_from(caller(2), MENTAL, 2, restricted) == set()  # IMSS recorded, IMSS reads
    assert hidden_from(caller(3), MENTAL, 2, restricted) == {MENTAL}
    assert hidden_from(caller(None), MENTAL, 2, restricted) == {MENTAL}
    assert hidden_from(caller(None), MENTAL, None, restricted) == {MENTAL}  # nobody's, not mine
    assert hidden_from(caller(2), MENTAL, None, restricted) == {MENTAL}
    assert hidden_from(caller(3), f"{MENTAL},{HIV}", 2, {HIV}) == {HIV}
    assert hidden_from(caller(3), "", 2, restricted) == set()
    assert hidden_from(caller(3), MENTAL, 2, set()) == set()  # nothing restricted


@pytest.mark.db
async def test_a_caller_without_an_institution_sees_no_restricted_entry(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, imss)
    await client.post("/fhir/Condition", json=condition(curp, "F32.9"), headers=imss)
    unsourced = ndjson({**condition(curp, "F41.1"), "id": "sin-institucion"})  # no institution
    report = await bulk.import_lines(
        app.state.sessions, importer(app, institution=None, clues=None), unsourced, source="f"
    )
    assert report.created == 1
    me = token_for(Role.CITIZEN, curp=curp)
    url = f"/api/v1/persons/{curp}/record-restrictions"
    assert (await client.put(url, json={"categories": [MENTAL]}, headers=me)).status_code == 200
    nobody = Principal("client:sin", "sin.institucion", Role.CLIENT, None,
                       scopes=frozenset({"system/*.read"}))  # fmt: skip
    headers = {"Authorization": f"Bearer {app.state.tokens.issue(nobody)}"}
    found = await client.get(f"/fhir/Condition?patient={curp}", headers=headers)
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 0  # neither IMSS's entry nor the one of no institution
    direct = await client.get("/fhir/Condition/sin-institucion", headers=headers)
    assert direct.status_code == 403
    mine = await client.get(f"/fhir/Condition?patient={curp}", headers=me)
    assert mine.json()["total"] == 2


async def test_reclassify_applies_todays_rules_to_what_is_stored(
    client: httpx.AsyncClient, token_for: TokenFor, cli_env: CliRunner
) -> None:
    """Entries stored before a rule existed (here: as if classified by CIE-10 only) get their
    category from `salud records reclassify`, current versions and history alike, and the
    restriction then applies to them."""
    from sqlalchemy import text

    from salud.cli.main import app as cli

    curp = await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    for doctor in (imss, issste):
        await cared_for(client, curp, doctor)
    load = {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "20447-9"}]},
            "subject": {"reference": f"Patient/{curp}"},
            "valueQuantity": {"value": 40, "unit": "copies/mL"}}  # fmt: skip
    made = (await client.post("/fhir/Observation", json=load, headers=imss)).json()
    again = {**load, "id": made["id"], "valueQuantity": {"value": 20, "unit": "copies/mL"}}
    assert (await client.put(f"/fhir/Observation/{made['id']}", json=again,
                             headers=imss)).status_code == 200  # fmt: skip
    sessions = client._transport.app.state.sessions  # type: ignore[attr-defined]
    async with sessions() as session, session.begin():
        for table in ("fhir_resources", "fhir_resource_versions"):
            await session.execute(text(f"UPDATE {table} SET sensitivity = ''"))
    me = token_for(Role.CITIZEN, curp=curp)
    url = f"/api/v1/persons/{curp}/record-restrictions"
    assert (await client.put(url, json={"categories": ["hiv"]}, headers=me)).status_code == 200
    target = f"/fhir/Observation/{made['id']}"
    assert (await client.get(target, headers=issste)).status_code == 200  # not yet classified
    result = await asyncio.to_thread(cli_env.invoke, cli, ["records", "reclassify", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 versiones" in result.output
    assert (await client.get(target, headers=issste)).status_code == 403
    assert (await client.get(f"{target}/_history/1", headers=issste)).status_code == 403
    assert (await client.get(target, headers=imss)).status_code == 200
