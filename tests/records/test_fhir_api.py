"""The FHIR API: CRUD with versions, history, search, OperationOutcome errors, access rules
across institutions, and a real FHIR client (fhirpy) against the live server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhirpy import AsyncFHIRClient

from salud.access.permissions import Role
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db
ICD10 = "http://hl7.org/fhir/sid/icd-10"
IMSS_UNIT, ISSSTE_UNIT = "HGIMS000010", "DFIST000123"


async def patient(client: httpx.AsyncClient) -> str:
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    curp: str = doc["curp"]
    return curp


def clinician(token_for: TokenFor, institution: int, clues: str, name: str) -> dict[str, str]:
    return token_for(Role.CLINICIAN, institution=institution, clues=clues, username=name)


async def cared_for(client: httpx.AsyncClient, curp: str, headers: dict[str, str]) -> None:
    answer = await client.post(
        f"/api/v1/persons/{curp}/care-relationships", json={"kind": "encounter"}, headers=headers
    )
    assert answer.status_code == 201, answer.text


def condition(curp: str, code: str = "E11.9", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{curp}"},
        "code": {"coding": [{"system": ICD10, "code": code, "display": "Diabetes tipo 2"}]},
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "active"}]},
        "recordedDate": "2026-11-20",
        **extra,
    }  # fmt: skip


def outcome(answer: httpx.Response) -> dict[str, Any]:
    assert answer.headers["content-type"].startswith("application/fhir+json"), answer.text
    body: dict[str, Any] = answer.json()
    assert body["resourceType"] == "OperationOutcome", body
    get_fhir_model_class("OperationOutcome").model_validate(body)
    return body


async def test_create_read_update_history_and_delete(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    created = await client.post("/fhir/Condition", json=condition(curp), headers=doctor)
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == 'W/"1"'
    body = created.json()
    fhir_id = body["id"]
    assert created.headers["location"].endswith(f"/fhir/Condition/{fhir_id}/_history/1")
    assert body["meta"]["source"] == f"urn:clues:{IMSS_UNIT}"
    assert body["meta"]["tag"][0]["display"] == "IMSS"
    read = (await client.get(f"/fhir/Condition/{fhir_id}", headers=doctor)).json()
    assert {k: v for k, v in read.items() if k not in ("id", "meta")} == condition(curp)

    changed = {**condition(curp), "id": fhir_id, "note": [{"text": "control con dieta"}]}
    updated = await client.put(
        f"/fhir/Condition/{fhir_id}", json=changed, headers={**doctor, "If-Match": 'W/"1"'}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    stale = await client.put(
        f"/fhir/Condition/{fhir_id}", json=changed, headers={**doctor, "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert outcome(stale)["issue"][0]["code"] == "conflict"
    first = (await client.get(f"/fhir/Condition/{fhir_id}/_history/1", headers=doctor)).json()
    assert "note" not in first
    assert first["meta"]["versionId"] == "1"

    verifier = token_for(Role.VERIFIER)
    assert (await client.delete(f"/fhir/Condition/{fhir_id}", headers=verifier)).status_code == 403
    # Deleting what is not there: 204 for whom may delete, 403 (not 204) for anyone else,
    # so that the answer does not tell whether it exists.
    for nothing, status in ((doctor, 204), (verifier, 403)):
        answer = await client.delete("/fhir/Condition/no-existe", headers=nothing)
        assert answer.status_code == status
    assert (await client.delete(f"/fhir/Condition/{fhir_id}", headers=doctor)).status_code == 204
    gone = await client.get(f"/fhir/Condition/{fhir_id}", headers=doctor)
    assert gone.status_code == 410
    history = (await client.get(f"/fhir/Condition/{fhir_id}/_history", headers=doctor)).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    get_fhir_model_class("Bundle").model_validate(history)


async def test_history_pages_and_takes_since(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A history longer than `_count` pages by `_offset` with next and previous links, its
    total counting every version; `_since` keeps the versions written at or after an
    instant."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    made = (await client.post("/fhir/Condition", json=condition(curp), headers=doctor)).json()
    url = f"/fhir/Condition/{made['id']}/_history"
    for n in range(4):
        note = {**condition(curp), "id": made["id"], "note": [{"text": f"nota {n}"}]}
        answer = await client.put(f"/fhir/Condition/{made['id']}", json=note, headers=doctor)
        assert answer.status_code == 200, answer.text

    seen: list[str] = []
    page: str | None = f"{url}?_count=2"
    while page is not None:
        answer = await client.get(page, headers=doctor)
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        assert bundle["total"] == 5
        get_fhir_model_class("Bundle").model_validate(bundle)
        seen += [e["response"]["etag"] for e in bundle["entry"]]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert ("previous" in links) == (len(seen) > 2)
        page = links.get("next")
    assert seen == [f'W/"{v}"' for v in (5, 4, 3, 2, 1)]

    everything = (await client.get(url, headers=doctor)).json()["entry"]
    moments = {e["response"]["etag"]: e["response"]["lastModified"] for e in everything}
    since = moments['W/"3"']
    answer = await client.get(url, params={"_since": since}, headers=doctor)
    assert answer.status_code == 200, answer.text
    kept = {e["response"]["etag"] for e in answer.json()["entry"]}
    # Instants to the millisecond compare as the moments they are written from.
    assert kept == {etag for etag, at in moments.items() if at >= since}
    assert {'W/"3"', 'W/"4"', 'W/"5"'} <= kept
    assert answer.json()["total"] == len(kept)
    later = await client.get(url, params={"_since": "2999-01-01T00:00:00-06:00"}, headers=doctor)
    assert later.json()["total"] == 0
    assert later.json()["entry"] == []
    for bad, name in (({"_since": "2030-01-01"}, "_since"), ({"_offset": "-1"}, "_offset")):
        answer = await client.get(url, params=bad, headers=doctor)
        assert answer.status_code == 400, bad
        assert name in outcome(answer)["issue"][0]["diagnostics"]


async def test_bad_requests_are_operation_outcomes_naming_the_problem(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    cases = [
        (b"{not json", 400, "structure"),
        (b'{"resourceType": "Observation", "status": "final"}', 400, "invalid"),
    ]
    for body, status, code in cases:
        answer = await client.post(
            "/fhir/Condition", content=body,
            headers={**doctor, "Content-Type": "application/fhir+json"},
        )  # fmt: skip
        assert answer.status_code == status, answer.text
        assert outcome(answer)["issue"][0]["code"] == code
    bad_date = await client.post(
        "/fhir/Condition", json=condition(curp, onsetDateTime="ayer"), headers=doctor
    )
    assert bad_date.status_code == 400
    assert outcome(bad_date)["issue"][0]["expression"] == ["Condition.onsetDateTime"]
    nowhere = await client.post(
        "/fhir/Condition",
        json=condition(curp, encounter={"reference": "Encounter/no-existe"}),
        headers=doctor,
    )
    assert nowhere.status_code == 422
    assert "Encounter/no-existe" in outcome(nowhere)["issue"][0]["diagnostics"]
    unknown = await client.post("/fhir/Condition", json=condition(curp, "Q99.99"), headers=doctor)
    assert unknown.status_code == 422
    issue = outcome(unknown)["issue"][0]
    assert issue["code"] == "code-invalid"
    assert issue["expression"] == ["Condition.code.coding[0].code"]
    odd = await client.get(f"/fhir/Condition?patient={curp}&colour=red", headers=doctor)
    assert odd.status_code == 400
    assert "colour" in outcome(odd)["issue"][0]["diagnostics"]
    nobody = await anonymous.get(f"/fhir/Condition?patient={curp}", headers={"Authorization": ""})
    assert nobody.status_code == 401
    assert outcome(nobody)["issue"][0]["code"] == "login"
    verifier = await client.get(f"/fhir/Condition?patient={curp}", headers=token_for(Role.VERIFIER))
    assert verifier.status_code == 403
    assert outcome(verifier)["issue"][0]["code"] == "forbidden"


async def test_search_with_paging_and_filters(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp, other = await patient(client), await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    for person in (curp, other):
        await cared_for(client, person, doctor)
    codes = ["E11.9", "I10", "J45.9", "E11.9", "K29.7"]
    for i, code in enumerate(codes):
        answer = await client.post(
            "/fhir/Condition", json=condition(curp, code, recordedDate=f"2026-0{i + 1}-15"),
            headers=doctor,
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
    await client.post("/fhir/Condition", json=condition(other), headers=doctor)

    async def ids(query: str) -> list[str]:
        answer = await client.get(f"/fhir/Condition?{query}", headers=doctor)
        assert answer.status_code == 200, answer.text
        return [e["resource"]["code"]["coding"][0]["code"] for e in answer.json()["entry"]]

    assert len(await ids(f"patient={curp}")) == 5
    assert await ids(f"patient={curp}&code=E11.9") == ["E11.9", "E11.9"]
    assert await ids(f"patient={curp}&code={ICD10}|I10") == ["I10"]
    assert await ids(f"patient={curp}&code=I10,K29.7&_sort=_lastUpdated") == ["I10", "K29.7"]
    assert await ids(f"subject=Patient/{curp}&recorded-date=ge2026-04-01") == ["K29.7", "E11.9"]
    assert await ids(f"patient={curp}&recorded-date=2026-02") == ["I10"]
    page = (await client.get(f"/fhir/Condition?patient={curp}&_count=2", headers=doctor)).json()
    assert page["total"] == 5
    assert len(page["entry"]) == 2
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    second = (await client.get(nxt.replace("http://test", ""), headers=doctor)).json()
    assert len(second["entry"]) == 2
    assert second["total"] == 5
    assert {e["resource"]["id"] for e in second["entry"]}.isdisjoint(
        {e["resource"]["id"] for e in page["entry"]}
    )
    # The total comes with the page; a page past the end still says how many there are.
    past = await client.get(f"/fhir/Condition?patient={curp}&_count=2&_offset=10", headers=doctor)
    assert past.json()["total"] == 5
    assert not past.json().get("entry")
    everyone = await client.get("/fhir/Condition?code=E11.9", headers=doctor)
    assert everyone.status_code == 400  # the record is searched one person at a time


async def test_sort_by_search_parameters(client: httpx.AsyncClient, token_for: TokenFor) -> None:
    """`_sort` by any search parameter of the type, `_id` and `_lastUpdated`, several keys,
    `-` for descending; a resource without the value last; paging keeps the order."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    # Written out of order, so that the order of writing cannot pass for the sort.
    for code, month in [("K29.7", 5), ("E11.9", 1), ("J45.9", 3), ("E11.9", 4), ("I10", 2)]:
        answer = await client.post(
            "/fhir/Condition", json=condition(curp, code, recordedDate=f"2026-0{month}-15"),
            headers=doctor,
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
    undated = condition(curp, "A09.0")
    del undated["recordedDate"]
    assert (await client.post("/fhir/Condition", json=undated, headers=doctor)).status_code == 201

    async def found(query: str) -> list[tuple[str, str | None]]:
        answer = await client.get(f"/fhir/Condition?patient={curp}&{query}", headers=doctor)
        assert answer.status_code == 200, answer.text
        return [
            (e["resource"]["code"]["coding"][0]["code"], e["resource"].get("recordedDate"))
            for e in answer.json()["entry"]
        ]

    by_date = [("E11.9", "2026-01-15"), ("I10", "2026-02-15"), ("J45.9", "2026-03-15"),
               ("E11.9", "2026-04-15"), ("K29.7", "2026-05-15")]  # fmt: skip
    assert await found("_sort=recorded-date") == [*by_date, ("A09.0", None)]
    assert await found("_sort=-recorded-date") == [*reversed(by_date), ("A09.0", None)]
    assert await found("_sort=code,-recorded-date") == [
        ("A09.0", None), ("E11.9", "2026-04-15"), ("E11.9", "2026-01-15"),
        ("I10", "2026-02-15"), ("J45.9", "2026-03-15"), ("K29.7", "2026-05-15"),
    ]  # fmt: skip
    assert [c for c, _ in await found("_sort=-code")] == [
        "K29.7",
        "J45.9",
        "I10",
        "E11.9",
        "E11.9",
        "A09.0",
    ]
    paged, url = [], f"/fhir/Condition?patient={curp}&_sort=recorded-date&_count=2"
    while url:
        page = (await client.get(url.replace("http://test", ""), headers=doctor)).json()
        paged += [e["resource"]["recordedDate"] for e in page["entry"] if "recordedDate"
                  in e["resource"]]  # fmt: skip
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
    assert paged == [d for _, d in by_date]
    # Ties (two E11.9) page stably: every entry once, in order, one per page.
    one_by_one, url = [], f"/fhir/Condition?patient={curp}&_sort=code&_count=1"
    while url:
        page = (await client.get(url.replace("http://test", ""), headers=doctor)).json()
        one_by_one += [(e["resource"]["id"], e["resource"]["code"]["coding"][0]["code"])
                       for e in page["entry"]]  # fmt: skip
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
    assert len({i for i, _ in one_by_one}) == len(one_by_one) == 6
    assert [c for _, c in one_by_one] == ["A09.0", "E11.9", "E11.9", "I10", "J45.9", "K29.7"]
    twice = await client.get(
        f"/fhir/Condition?patient={curp}&_sort=code&_sort=-code", headers=doctor
    )
    assert twice.status_code == 400
    ids = [e["resource"]["id"] for e in (
        await client.get(f"/fhir/Condition?patient={curp}&_sort=-_id", headers=doctor)
    ).json()["entry"]]  # fmt: skip
    assert len(ids) == 6
    assert ids == sorted(ids, reverse=True)

    # A period sorts by its start ascending and by its end descending (R4 §3.1.1.5.4).
    long_stay = {"start": "2026-01-01T08:00:00Z", "end": "2026-12-31T08:00:00Z"}
    short_stay = {"start": "2026-06-01T08:00:00Z", "end": "2026-06-02T08:00:00Z"}
    for period in (short_stay, long_stay):
        visit = {"resourceType": "Encounter", "status": "finished", "period": period,
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                           "code": "AMB"}, "subject": {"reference": f"Patient/{curp}"}}  # fmt: skip
        assert (await client.post("/fhir/Encounter", json=visit, headers=doctor)).status_code == 201
    for order in ("date", "-date"):
        answer = await client.get(f"/fhir/Encounter?patient={curp}&_sort={order}", headers=doctor)
        assert [e["resource"]["period"] for e in answer.json()["entry"]] == [long_stay, short_stay]

    for bad, named in [("colour", "colour"), ("code,-code", "code"), ("", "«»")]:
        answer = await client.get(f"/fhir/Condition?patient={curp}&_sort={bad}", headers=doctor)
        assert answer.status_code == 400, bad
        issue = outcome(answer)["issue"][0]
        assert named in issue["diagnostics"]
        assert issue["expression"] == ["_sort"]


async def test_decimals_come_back_as_written_on_every_path(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """FHIR: a decimal's precision is significant. 1.50 stays 1.50 (it came back 1.5), and
    an exponent or a long number as sent, through create, read, search, history, update,
    transactions, $everything and $summary."""
    curp = await patient(client)
    doctor = {**clinician(token_for, 2, IMSS_UNIT, "medica.imss"),
              "content-type": "application/fhir+json"}  # fmt: skip
    await cared_for(client, curp, doctor)
    numbers = ["1.50", "2.0E+3", "0.0000010", "-0.0", "12345678901234567.50"]

    def lab(value: str, code: str = "2160-0", fhir_id: str | None = None) -> bytes:
        """The body as a laboratory system writes it: numbers as text, never via a float."""
        components = ", ".join(
            f'{{"code": {{"text": "n{i}"}}, "valueQuantity": {{"value": {n}}}}}'
            for i, n in enumerate(numbers)
        )
        category = ('{"coding": [{"system": '
                    '"http://terminology.hl7.org/CodeSystem/observation-category", '
                    '"code": "laboratory"}]}')  # fmt: skip
        return (
            "{"
            + (f'"id": "{fhir_id}", ' if fhir_id else "")
            + f'"resourceType": "Observation", "status": "final", "category": [{category}], '
            f'"code": {{"coding": [{{"system": "http://loinc.org", "code": "{code}"}}]}}, '
            f'"subject": {{"reference": "Patient/{curp}"}}, '
            f'"effectiveDateTime": "2026-11-30T10:00:00Z", '
            f'"valueQuantity": {{"value": {value}, "unit": "mg/dL"}}, '
            f'"referenceRange": [{{"low": {{"value": 0.70}}, "high": {{"value": {numbers[1]}}}}}], '
            f'"component": [{components}]}}'
        ).encode()

    def kept(body: bytes | str) -> None:
        text = body.decode() if isinstance(body, bytes) else body
        for n in ["1.50", "0.70", *numbers]:
            assert f":{n}" in text, (n, text[:400])
        assert ":1.5," not in text
        assert ":1.5}" not in text

    created = await client.post("/fhir/Observation", content=lab("1.50"), headers=doctor)
    assert created.status_code == 201, created.text
    kept(created.content)
    oid = created.json()["id"]
    kept((await client.get(f"/fhir/Observation/{oid}", headers=doctor)).content)
    kept((await client.get(f"/fhir/Observation?patient={curp}", headers=doctor)).content)
    updated = await client.put(
        f"/fhir/Observation/{oid}", content=lab("1.50", fhir_id=oid), headers=doctor
    )
    assert updated.status_code == 200, updated.text
    kept((await client.get(f"/fhir/Observation/{oid}/_history", headers=doctor)).content)
    kept((await client.get(f"/fhir/Observation/{oid}/_history/1", headers=doctor)).content)
    entry = lab("1.50", "2345-7").decode()
    bundle = (
        '{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": '
        f'{entry}, "request": {{"method": "POST", "url": "Observation"}}}}]}}'
    )
    done = await client.post(
        "/fhir", content=bundle.encode(), headers={**doctor, "Prefer": "return=representation"}
    )
    assert done.status_code == 200, done.text
    location = done.json()["entry"][0]["response"]["location"].split("/_history")[0]
    kept((await client.get(f"/fhir/{location}", headers=doctor)).content)
    kept((await client.get(f"/fhir/Patient/{curp}/$everything", headers=doctor)).content)
    summary = await client.get(f"/fhir/Patient/{curp}/$summary", headers=doctor)
    assert summary.status_code == 200, summary.text
    kept(summary.content)


async def test_a_clinician_at_another_institution_reads_what_imss_recorded(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    await cared_for(client, curp, imss)
    allergy = {
        "resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{curp}"},
        "code": {"text": "Penicilina"}, "criticality": "high",
    }  # fmt: skip
    prescription = {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": f"Patient/{curp}"},
        "medicationCodeableConcept": {"text": "Metformina 850 mg"},
    }  # fmt: skip
    for doc in (allergy, prescription):
        assert (
            await client.post(f"/fhir/{doc['resourceType']}", json=doc, headers=imss)
        ).status_code == 201
    refused = await client.get(f"/fhir/AllergyIntolerance?patient={curp}", headers=issste)
    assert refused.status_code == 403
    await cared_for(client, curp, issste)  # the person arrives at the ISSSTE unit
    allergies = (
        await client.get(f"/fhir/AllergyIntolerance?patient={curp}", headers=issste)
    ).json()
    assert [e["resource"]["code"]["text"] for e in allergies["entry"]] == ["Penicilina"]
    assert allergies["entry"][0]["resource"]["meta"]["source"] == f"urn:clues:{IMSS_UNIT}"
    meds = (await client.get(f"/fhir/MedicationRequest?patient={curp}", headers=issste)).json()
    assert meds["total"] == 1
    me = token_for(Role.CITIZEN, curp=curp)
    log = (await client.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    reads = [e for e in log if e["actor"] == "medico.issste" and e["action"].startswith("records:")]
    assert {e["action"] for e in reads} >= {
        "records:AllergyIntolerance:search",
        "records:MedicationRequest:search",
    }
    assert all(e["institution_code"] == 3 for e in reads)
    # The person reads their own record; the Patient is the registry's person.
    mine = await client.get(f"/fhir/Patient/{curp}", headers=me)
    assert mine.status_code == 200
    assert mine.json()["identifier"][0] == {
        "use": "official", "system": "urn:oid:2.16.840.1.113883.4.629", "value": curp
    }  # fmt: skip
    get_fhir_model_class("Patient").model_validate(mine.json())


async def test_the_capability_statement_says_what_is_there(client: httpx.AsyncClient) -> None:
    answer = await client.get("/fhir/metadata")
    assert answer.status_code == 200
    statement = answer.json()
    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    kinds = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Condition", "Observation", "AllergyIntolerance", "Patient"} <= set(kinds)
    assert "code" in {p["name"] for p in kinds["Condition"]["searchParam"]}
    assert [i["code"] for i in kinds["Patient"]["interaction"]] == ["read", "search-type"]


async def test_fhirpy_drives_the_live_server(
    client: httpx.AsyncClient, token_for: TokenFor, live_server: str
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    fhir = AsyncFHIRClient(f"{live_server}/fhir", authorization=doctor["Authorization"])
    observation = fhir.resource(
        "Observation", status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "FC"},
        subject={"reference": f"Patient/{curp}"}, effectiveDateTime="2026-11-30T10:00:00Z",
        valueQuantity={"value": 72, "unit": "/min"},
    )  # fmt: skip
    await observation.save()
    assert observation.id
    found = await fhir.resources("Observation").search(patient=curp, code="8867-4").fetch()
    assert [o.id for o in found] == [observation.id]
    observation["valueQuantity"] = {"value": 80, "unit": "/min"}
    await observation.save()
    fresh = await fhir.reference("Observation", observation.id).to_resource()
    assert fresh["meta"]["versionId"] == "2"
    history = await fhir.execute(f"Observation/{observation.id}/_history", method="get")
    assert history["total"] == 2
    curp_system = "urn:oid:2.16.840.1.113883.4.629"
    patients = await fhir.resources("Patient").search(identifier=f"{curp_system}|{curp}").fetch()
    assert [p.id for p in patients] == [curp]
    # A transaction through the client: both entries or neither.
    pulse = {"resourceType": "Observation", "status": "final", "code": {"text": "FC"},
             "subject": {"reference": f"Patient/{curp}"},
             "valueQuantity": {"value": 70}}  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": pulse, "request": {"method": "POST", "url": "Observation"}},
        {"resource": {**pulse, "valueQuantity": {"value": 75}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}  # fmt: skip
    done = await fhir.execute("", method="post", data=bundle)
    assert done["type"] == "transaction-response"
    assert [e["response"]["status"] for e in done["entry"]] == ["201 Created"] * 2
    after = await fhir.resources("Observation").search(patient=curp).fetch_all()
    assert len(after) == 3
    # The client's sort: the one dated Observation first both ways (those with no date sort
    # last), and first by _lastUpdated ascending (it was written before the other two).
    dated = fhir.resources("Observation").search(patient=curp)
    assert (await dated.sort("date").fetch())[0].id == observation.id
    assert (await dated.sort("-date", "_id").fetch())[0].id == observation.id
    oldest_first = [o.id for o in await dated.sort("_lastUpdated").fetch()]
    assert oldest_first[0] == observation.id  # the default order is the other way round


async def test_a_machine_client_reads_only_the_types_its_scopes_name(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    from salud.access.principal import Principal
    from salud.access.tokens import TokenService

    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    await client.post("/fhir/Condition", json=condition(curp), headers=doctor)
    app_tokens: TokenService = client._transport.app.state.tokens  # type: ignore[attr-defined]
    his = Principal(
        "client:his", "his.hospital", Role.CLIENT, 2,
        scopes=frozenset({"system/Condition.read"}),
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {app_tokens.issue(his)}"}
    ok = await client.get(f"/fhir/Condition?patient={curp}", headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["total"] == 1
    other = await client.get(f"/fhir/Observation?patient={curp}", headers=headers)
    assert other.status_code == 403
    write = await client.post("/fhir/Condition", json=condition(curp), headers=headers)
    assert write.status_code == 403


async def test_everything_and_validate(client: httpx.AsyncClient, token_for: TokenFor) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    await client.post("/fhir/Condition", json=condition(curp), headers=doctor)
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{curp}"},
               "code": {"text": "Penicilina"}}  # fmt: skip
    await client.post("/fhir/AllergyIntolerance", json=allergy, headers=doctor)
    everything = await client.get(f"/fhir/Patient/{curp}/$everything", headers=doctor)
    assert everything.status_code == 200, everything.text
    bundle = everything.json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    # The factory's person has one affiliation (IMSS): its Coverage is in the compartment.
    # the institution the Coverage names as payor comes along, as an _include does
    assert kinds == ["Patient", "Coverage", "AllergyIntolerance", "Condition", "Organization"]
    paged = (await client.get(f"/fhir/Patient/{curp}/$everything?_count=1", headers=doctor)).json()
    assert any(link["relation"] == "next" for link in paged["link"])
    stranger = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    assert (
        await client.get(f"/fhir/Patient/{curp}/$everything", headers=stranger)
    ).status_code == 403

    fine = await client.post("/fhir/Condition/$validate", json=condition(curp), headers=doctor)
    assert fine.status_code == 200
    assert outcome(fine)["issue"][0]["severity"] == "information"
    unknown = condition(curp, "Q99.99")
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": unknown}],
    }
    bad = await client.post("/fhir/Condition/$validate", json=wrapped, headers=doctor)
    assert bad.status_code == 200
    assert outcome(bad)["issue"][0]["code"] == "code-invalid"
    listed = (await client.get(f"/fhir/Condition?patient={curp}", headers=doctor)).json()
    assert listed["total"] == 1  # $validate stores nothing
    # What a create refuses for its content, $validate reports: no patient, a reference to
    # nothing.
    orphan = {"resourceType": "Observation", "status": "final", "code": {"text": "FC"}}
    dangling = condition(curp, encounter={"reference": "Encounter/nada"})
    for doc, code in ((orphan, "required"), (dangling, "not-found")):
        kind = doc["resourceType"]
        checked = await client.post(f"/fhir/{kind}/$validate", json=doc, headers=doctor)
        assert checked.status_code == 200, checked.text
        assert outcome(checked)["issue"][0]["severity"] == "error", doc
        assert outcome(checked)["issue"][0]["code"] == code, outcome(checked)
        assert (await client.post(f"/fhir/{kind}", json=doc, headers=doctor)).status_code >= 400
    # Which element holds the reference to nothing, or a reference that is not Type/id.
    created = await client.post("/fhir/Condition", json=dangling, headers=doctor)
    assert outcome(created)["issue"][0]["expression"] == ["Condition.encounter"]
    for odd in ("Encounter", "Encounter/a/b", "/Encounter/x"):
        malformed = condition(curp, encounter={"reference": odd})
        refused = await client.post("/fhir/Condition", json=malformed, headers=doctor)
        assert refused.status_code == 422, (odd, refused.text)
        issue = outcome(refused)["issue"][0]
        assert (issue["code"], issue["expression"]) == ("value", ["Condition.encounter"]), odd
        assert "Tipo/id" in issue["diagnostics"]
    # Whether a person or a record exists is told only to whom may write in that record (as
    # a create would): not to a clinician without a basis, a citizen for another, reception.
    nobody = condition("XEXX010101HNEXXXA4")
    someone = condition(await patient(client))
    stranger = token_for(Role.CITIZEN, curp="XEXX010101HNEXXXA4")
    for doc, headers in ((nobody, doctor), (someone, doctor), (dangling, stranger),
                         (dangling, token_for(Role.VERIFIER))):  # fmt: skip
        refused = await client.post("/fhir/Condition/$validate", json=doc, headers=headers)
        assert refused.status_code == 403, refused.text


def _fhirclient_reads(base: str, token: str, curp: str, condition_id: str) -> tuple[str, str, int]:
    """SMART's fhirclient (its own R4 models) reads the CapabilityStatement, a Patient, a
    Condition and a search; (family name, ICD-10 code, search total)."""
    from fhirclient import client as smart
    from fhirclient.models.condition import Condition
    from fhirclient.models.patient import Patient

    fhir = smart.FHIRClient(settings={"app_id": "salud-pruebas", "api_base": base})
    fhir.server.session.headers["Authorization"] = token
    statement = fhir.server.capabilityStatement
    assert statement.fhirVersion == "4.0.1"
    person = Patient.read(curp, fhir.server)
    diagnosis = Condition.read(condition_id, fhir.server)
    found = list(Condition.where(struct={"patient": curp}).perform_iter(fhir.server))
    return person.name[0].family, diagnosis.code.coding[0].code, len(found)


async def test_fhirclient_reads_from_the_live_server(
    client: httpx.AsyncClient, token_for: TokenFor, live_server: str
) -> None:
    import asyncio

    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    created = (await client.post("/fhir/Condition", json=condition(curp), headers=doctor)).json()
    family, code, total = await asyncio.to_thread(
        _fhirclient_reads, f"{live_server}/fhir", doctor["Authorization"], curp, created["id"]
    )
    assert code == "E11.9"
    assert total == 1
    assert family


async def test_token_system_only_and_unknown_parameters_of_other_interactions(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """`code=system|` is any code of that system (it matched nothing); `$everything` and the
    histories report a parameter they do not know instead of ignoring it; instance history
    takes `_count`."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    made = (await client.post("/fhir/Condition", json=condition(curp), headers=doctor)).json()
    changed = {**condition(curp, "E11.9", note=[{"text": "control"}]), "id": made["id"]}
    assert (await client.put(f"/fhir/Condition/{made['id']}", json=changed,
                             headers=doctor)).status_code == 200  # fmt: skip
    base = "/fhir/Condition"
    for value, total in ((f"{ICD10}|", 1), ("http://otro|", 0), (f"{ICD10}|E11.9", 1),
                         ("|E11.9", 0), ("E11.9", 1)):  # fmt: skip
        answer = await client.get(base, params={"patient": curp, "code": value}, headers=doctor)
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] == total, value
    for empty in ("", "|"):
        answer = await client.get(base, params={"patient": curp, "code": empty}, headers=doctor)
        assert answer.status_code == 400, empty
    for url in (f"/fhir/Patient/{curp}/$everything?_type=Observation",
                f"/fhir/Condition/{made['id']}/_history?_at=2030-01-01",
                "/fhir/Practitioner/_history?bogus=1"):  # fmt: skip
        answer = await client.get(url, headers=doctor)
        assert answer.status_code == 400, url
        assert outcome(answer)["issue"][0]["diagnostics"].startswith("parámetros no admitidos")
    one = await client.get(f"/fhir/Condition/{made['id']}/_history?_count=1", headers=doctor)
    assert [e["response"]["etag"] for e in one.json()["entry"]] == ['W/"2"']
    # Nor do read, vread, create, update, delete and Bundles ignore one (_summary included:
    # a client asking for a summary must not get the whole resource as if it were one).
    target = f"/fhir/Condition/{made['id']}"
    for answer in (
        await client.get(f"{target}?_summary=true", headers=doctor),
        await client.get(f"{target}/_history/1?foo=bar", headers=doctor),
        await client.get(f"/fhir/Patient/{curp}?_elements=name", headers=doctor),
        await client.post(f"{base}?foo=bar", json=condition(curp), headers=doctor),
        await client.put(f"{target}?foo=bar", json=changed, headers=doctor),
        await client.delete(f"{target}?foo=bar", headers=doctor),
        await client.post("/fhir?foo=bar", json={"resourceType": "Bundle", "type": "batch"},
                          headers=doctor),
    ):  # fmt: skip
        assert answer.status_code == 400, answer.request.url
        assert outcome(answer)["issue"][0]["diagnostics"].startswith("parámetros no admitidos")
    kept = await client.get(f"{target}?_format=json", headers=doctor)
    assert kept.json()["meta"]["versionId"] == "2"


async def test_cie10_is_checked_wherever_a_diagnosis_is_coded(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)

    def reason(code: str) -> list[dict[str, Any]]:
        return [{"coding": [{"system": ICD10, "code": code}]}]

    visit = {"resourceType": "Encounter", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                       "code": "AMB"},
             "subject": {"reference": f"Patient/{curp}"}}  # fmt: skip
    prescription = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                    "medicationCodeableConcept": {"text": "Metformina"},
                    "subject": {"reference": f"Patient/{curp}"}}  # fmt: skip
    for doc, element in ((visit, "Encounter.reasonCode[0]"),
                         (prescription, "MedicationRequest.reasonCode[0]")):  # fmt: skip
        kind = doc["resourceType"]
        bad = await client.post(f"/fhir/{kind}", json={**doc, "reasonCode": reason("Q99.99")},
                                headers=doctor)  # fmt: skip
        assert bad.status_code == 422, bad.text
        assert outcome(bad)["issue"][0]["expression"] == [f"{element}.coding[0].code"]
        good = await client.post(f"/fhir/{kind}", json={**doc, "reasonCode": reason("E11.9")},
                                 headers=doctor)  # fmt: skip
        assert good.status_code == 201, good.text


async def test_where_an_entry_came_from_is_the_servers_to_say(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A writer without a unit (a machine client) sends a Condition whose meta.source names
    another institution's unit: it is not kept, and the entry carries the writer's own
    institution only; a clinician's write names their unit whatever the document says."""
    from salud.access.principal import Principal
    from salud.access.tokens import TokenService

    curp = await patient(client)
    app_tokens: TokenService = client._transport.app.state.tokens  # type: ignore[attr-defined]
    scopes = frozenset({"system/Condition.read", "system/Condition.write"})
    his = Principal("client:his", "his.hospital", Role.CLIENT, 2, scopes=scopes)
    machine = {"Authorization": f"Bearer {app_tokens.issue(his)}"}
    forged = {**condition(curp), "meta": {"source": f"urn:clues:{ISSSTE_UNIT}"}}
    made = await client.post("/fhir/Condition", json=forged, headers=machine)
    assert made.status_code == 201, made.text
    meta = made.json()["meta"]
    assert "source" not in meta
    assert [t["code"] for t in meta["tag"]] == ["2"]
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    by_doctor = await client.post("/fhir/Condition", json=forged, headers=doctor)
    assert by_doctor.json()["meta"]["source"] == f"urn:clues:{IMSS_UNIT}"
