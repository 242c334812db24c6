"""A minor's mother, father or guardian linked in the registry is a FHIR RelatedPerson
(records/mirror.py): read and searched under the minor's access rules and audit, ended links
kept as the second version, in the minor's $everything, read-only for the registry's ids,
while RelatedPersons that institutions write are kept as any resource."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given
from hypothesis import strategies as st

from salud.access.permissions import Role
from salud.kit.ages import age_on
from salud.kit.clock import today_mx
from salud.records.indexing import fhir_instant
from salud.records.mirror import (
    ROLE_CODE,
    Link,
    coming_of_age,
    day_starts,
    guardian_id,
    parse_guardian_id,
    related_person,
)
from salud.records.patient import CURP_SYSTEM
from tests.conftest import TokenFor
from tests.factories.persons import person_doc
from tests.records.test_fhir_api import IMSS_UNIT, ISSSTE_UNIT, cared_for, clinician, outcome

pytestmark = pytest.mark.db


def _model(doc: dict[str, Any]) -> Any:
    return get_fhir_model_class(doc["resourceType"]).model_validate(doc)


async def _registered(client: httpx.AsyncClient, birth: date) -> str:
    doc = person_doc(birth_date=birth.isoformat())
    answer = await client.post("/api/v1/persons", json=doc)
    assert answer.status_code == 201, answer.text
    return str(doc["curp"])


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


async def test_a_minors_guardian_is_a_related_person_under_the_minors_rules(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    today = today_mx()
    birth = today.replace(year=today.year - 8) if today.month != 2 else date(today.year - 8, 3, 1)
    child = await _registered(client, birth)
    mother = await _registered(client, date(1988, 5, 6))
    linked = await client.post(
        f"/api/v1/persons/{child}/guardians",
        json={"guardian_curp": mother, "relationship": "mother", "reason": "acta de nacimiento"},
    )
    assert linked.status_code == 201, linked.text

    me = token_for(Role.CITIZEN, curp=child, username="la.menor")
    found = await client.get(f"/fhir/RelatedPerson?patient={child}", headers=me)
    assert found.status_code == 200, found.text
    bundle = found.json()
    _model(bundle)
    assert bundle["total"] == 1
    doc = bundle["entry"][0]["resource"]
    _model(doc)
    key = parse_guardian_id(doc["id"])
    assert key is not None
    assert key[0] == child
    assert doc["identifier"] == [{"use": "official", "system": CURP_SYSTEM, "value": mother}]
    assert doc["patient"] == {"reference": f"Patient/{child}"}
    assert doc["relationship"][0]["coding"][0] == {
        "system": ROLE_CODE, "code": "MTH", "display": "mother"
    }  # fmt: skip
    assert doc["active"] is True
    # The instant the minor comes of age (a date alone would include the whole birthday,
    # when the link no longer holds).
    assert doc["period"]["end"] == fhir_instant(day_starts(coming_of_age(birth)))
    assert doc["meta"]["versionId"] == "1"
    read = await client.get(f"/fhir/RelatedPerson/{doc['id']}", headers=me)
    assert read.status_code == 200, read.text
    assert read.json() == doc
    for query in ("relationship=MTH", f"identifier={CURP_SYSTEM}|{mother}", "active=true"):
        hit = await client.get(f"/fhir/RelatedPerson?patient={child}&{query}", headers=me)
        assert _ids(hit.json()) == [doc["id"]], query
    for query in ("relationship=FTH", "identifier=OTRA", "active=false"):
        miss = await client.get(f"/fhir/RelatedPerson?patient={child}&{query}", headers=me)
        assert miss.json()["total"] == 0, query
    with_patient = await client.get(
        f"/fhir/RelatedPerson?patient={child}&_include=RelatedPerson:patient", headers=me
    )
    assert _ids(with_patient.json(), "include") == [child]
    for query in ("", "relationship=MTH", "patient=", f"patient={child}&active=si",
                  f"patient={child}&nombre=Ana"):  # fmt: skip
        refused = await client.get(f"/fhir/RelatedPerson?{query}", headers=me)
        assert refused.status_code == 400, (query, refused.text)
        outcome(refused)
    gone = await client.get(f"/fhir/RelatedPerson/{guardian_id(child, 10**12)}", headers=me)
    assert gone.status_code == 404

    # A clinician with no basis for the minor is refused (audited); with one, reads.
    doctor = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    assert (await client.get(f"/fhir/RelatedPerson/{doc['id']}", headers=doctor)).status_code == 403
    listed = await client.get(f"/fhir/RelatedPerson?patient={child}", headers=doctor)
    assert listed.status_code == 403
    await cared_for(client, child, doctor)
    allowed = await client.get(f"/fhir/RelatedPerson/{doc['id']}", headers=doctor)
    assert allowed.status_code == 200, allowed.text
    log = (await client.get(f"/api/v1/persons/{child}/accesses", headers=me)).json()["items"]
    seen = {
        (e["action"], e["outcome"])
        for e in log
        if e["actor"] == "medico.issste" and "RelatedPerson" in e["action"]
    }
    assert seen == {
        ("records:RelatedPerson:read", "denied"),
        ("records:RelatedPerson:search", "denied"),
        ("records:RelatedPerson:read", "success"),
    }
    # Another person's links stay closed to a citizen.
    stranger = token_for(Role.CITIZEN, curp=mother, username="otra.persona")
    other = await _registered(client, date(2015, 1, 2))
    assert (
        await client.get(f"/fhir/RelatedPerson?patient={other}", headers=stranger)
    ).status_code == 403

    # The minor's $everything carries the link with the Coverage and the Patient.
    everything = (await client.get(f"/fhir/Patient/{child}/$everything", headers=me)).json()
    _model(everything)
    kinds = [e["resource"]["resourceType"] for e in everything["entry"]]
    assert kinds.count("RelatedPerson") == 1
    matches = [e for e in everything["entry"] if e.get("search", {}).get("mode") != "include"]
    assert everything["total"] == len(matches)

    # Registry staff end the link: its second version, inactive, ended when it was ended.
    ended = await client.post(
        f"/api/v1/persons/{child}/guardians/{mother}/end", json={"reason": "resolución judicial"}
    )
    assert ended.status_code == 200, ended.text
    after = (await client.get(f"/fhir/RelatedPerson/{doc['id']}", headers=me)).json()
    assert (after["active"], after["meta"]["versionId"]) == (False, "2")
    assert after["period"]["end"] == after["meta"]["lastUpdated"]
    inactive = await client.get(f"/fhir/RelatedPerson?patient={child}&active=false", headers=me)
    assert _ids(inactive.json()) == [doc["id"]]
    assert (await client.get(f"/fhir/RelatedPerson/{doc['id']}/_history/2", headers=me)).json()[
        "active"
    ] is False
    stale = await client.get(f"/fhir/RelatedPerson/{doc['id']}/_history/1", headers=me)
    assert stale.status_code == 404


async def test_the_registrys_links_are_read_only_and_institutions_write_their_own(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    child = await _registered(client, date(2016, 4, 5))
    father = await _registered(client, date(1985, 7, 8))
    linked = await client.post(
        f"/api/v1/persons/{child}/guardians",
        json={"guardian_curp": father, "relationship": "father", "reason": "acta de nacimiento"},
    )
    assert linked.status_code == 201, linked.text
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, child, doctor)
    mirror_id = _ids(
        (await client.get(f"/fhir/RelatedPerson?patient={child}", headers=doctor)).json()
    )[0]
    body = {
        "resourceType": "RelatedPerson", "id": mirror_id, "active": False,
        "patient": {"reference": f"Patient/{child}"},
    }  # fmt: skip
    for method, payload in (("PUT", body), ("DELETE", None)):
        answer = await client.request(
            method, f"/fhir/RelatedPerson/{mirror_id}", json=payload, headers=doctor
        )
        assert answer.status_code == 405, (method, answer.text)
        assert "padrón" in outcome(answer)["issue"][0]["diagnostics"]
    history = await client.get(f"/fhir/RelatedPerson/{mirror_id}/_history", headers=doctor)
    assert history.status_code == 400
    assert "/guardians" in outcome(history)["issue"][0]["diagnostics"]

    # An emergency contact the IMSS unit records: kept, versioned, read by id, not listed.
    contact = {
        "resourceType": "RelatedPerson", "active": True,
        "patient": {"reference": f"Patient/{child}"},
        "relationship": [{"coding": [{"system": ROLE_CODE, "code": "GRMTH"}]}],
        "name": [{"family": "López", "given": ["Rosa"]}],
    }  # fmt: skip
    created = await client.post("/fhir/RelatedPerson", json=contact, headers=doctor)
    assert created.status_code == 201, created.text
    kept = created.json()
    assert parse_guardian_id(kept["id"]) is None
    updated = await client.put(
        f"/fhir/RelatedPerson/{kept['id']}", json={**kept, "active": False}, headers=doctor
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    listed = (await client.get(f"/fhir/RelatedPerson?patient={child}", headers=doctor)).json()
    assert _ids(listed) == [mirror_id]

    # A clinical entry may name either; a registry id that names no link is a reference to
    # nothing, refused.
    encounter = {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{child}"},
        "participant": [{"individual": {"reference": f"RelatedPerson/{mirror_id}"}},
                        {"individual": {"reference": f"RelatedPerson/{kept['id']}"}}],
    }  # fmt: skip
    written = await client.post("/fhir/Encounter", json=encounter, headers=doctor)
    assert written.status_code == 201, written.text
    nothing = guardian_id(child, 10**12)
    encounter["participant"] = [{"individual": {"reference": f"RelatedPerson/{nothing}"}}]
    refused = await client.post("/fhir/Encounter", json=encounter, headers=doctor)
    assert refused.status_code == 422, refused.text
    assert nothing in outcome(refused)["issue"][0]["diagnostics"]

    statement = (await client.get("/fhir/metadata")).json()
    entries = [r for r in statement["rest"][0]["resource"] if r["type"] == "RelatedPerson"]
    assert len(entries) == 1
    assert {p["name"] for p in entries[0]["searchParam"]} == {
        "_id", "identifier", "patient", "relationship", "active"
    }  # fmt: skip
    assert {"read", "create", "update", "search-type"} <= {
        i["code"] for i in entries[0]["interaction"]
    }


# --- pure -----------------------------------------------------------------------------------

CURPS = st.from_regex(r"[A-Z]{4}[0-9]{6}[HM][A-Z]{5}[0-9A-Z][0-9]", fullmatch=True)


@given(CURPS, st.integers(1, 10**18 - 1))
def test_a_link_id_is_a_fhir_id_that_reads_back(curp: str, number: int) -> None:
    fhir_id = guardian_id(curp, number)
    assert len(fhir_id) <= 64
    assert parse_guardian_id(fhir_id) == (curp, number)


@given(st.text(max_size=60))
def test_any_other_text_is_no_link_id_or_reads_back_to_itself(text: str) -> None:
    key = parse_guardian_id(text)
    assert key is None or guardian_id(*key) == text


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)))
def test_coming_of_age_is_the_first_day_of_being_18(birth: date) -> None:
    day = coming_of_age(birth)
    assert age_on(birth, day) == 18
    assert age_on(birth, day - timedelta(days=1)) == 17


@given(st.sampled_from(["mother", "father", "guardian"]), st.booleans())
def test_a_related_person_is_valid_r4b(relationship: str, ended: bool) -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    link = Link(7, "AAAA100101HDFRRR09", "BBBB800101MDFRRR01", relationship, at,
                at + timedelta(days=1) if ended else None)  # fmt: skip
    doc = related_person(link, date(2010, 1, 1), date(2026, 6, 1))
    _model(doc)
    assert doc["active"] is not ended
    assert doc["meta"]["versionId"] == ("2" if ended else "1")


def test_a_link_in_force_says_when_the_minor_came_of_age() -> None:
    """On the minor's 18th birthday a link in force stops being active with no change in the
    registry: the version stays 1, and `lastUpdated` is that day's beginning in Mexico
    (UTC-6). An ended link keeps the moment it was ended."""
    from datetime import UTC, datetime

    linked = datetime(2020, 5, 1, 15, tzinfo=UTC)
    link = Link(7, "AAAA080615HDFRRR09", "BBBB800101MDFRRR01", "mother", linked, None)
    birth = date(2008, 6, 15)
    before = related_person(link, birth, date(2026, 6, 14))
    assert (before["active"], before["meta"]) == (
        True, {"versionId": "1", "lastUpdated": "2020-05-01T15:00:00.000Z"}
    )  # fmt: skip
    after = related_person(link, birth, date(2026, 6, 15))
    assert (after["active"], after["meta"]) == (
        False, {"versionId": "1", "lastUpdated": "2026-06-15T06:00:00.000Z"}
    )  # fmt: skip
    ended = related_person(
        Link(7, link.minor_curp, link.guardian_curp, "mother", linked, linked + timedelta(days=9)),
        birth, date(2026, 6, 15),
    )  # fmt: skip
    assert ended["meta"] == {"versionId": "2", "lastUpdated": "2020-05-10T15:00:00.000Z"}
