"""Requests shaped to break the FHIR API: each is a clear refusal (400/405 naming the problem),
never a 500, and a refusal inside a transaction stays on the person's record. Found by a
review of the API against issues 3 and 5."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from salud.access.permissions import Role
from tests.conftest import TokenFor
from tests.records.test_fhir_api import IMSS_UNIT, cared_for, clinician, condition, outcome, patient

pytestmark = pytest.mark.db
FHIR = {"Content-Type": "application/fhir+json"}


async def treated(client: httpx.AsyncClient, token_for: TokenFor) -> tuple[str, dict[str, str]]:
    """A registered person and an IMSS clinician who cares for them (their token)."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    return curp, doctor


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


async def test_malformed_bundles_are_400_naming_the_entry(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp, doctor = await treated(client, token_for)
    post = {"resource": condition(curp), "request": {"method": "POST", "url": "Condition"}}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"resourceType": "Bundle", "type": "transaction", "entry": 5}, "Bundle.entry"),
        (transaction({**post, "request": {"method": ["POST"], "url": "Condition"}}),
         "Bundle.entry[0].request.method"),
        (transaction({**post, "request": {"method": {"a": 1}, "url": "Condition"}}),
         "Bundle.entry[0].request.method"),
        (transaction({**post, "fullUrl": ["urn:uuid:x"]}), "Bundle.entry[0].fullUrl"),
        (transaction({**post, "fullUrl": {"a": 1}}), "Bundle.entry[0].fullUrl"),
        (transaction({**post, "fullUrl": "urn:uuid:1"}, {**post, "fullUrl": "urn:uuid:1"}),
         "Bundle.entry[1].fullUrl"),
    ]  # fmt: skip
    for body, where in cases:
        for kind in ("transaction", "batch"):
            sent = {**body, "type": kind}
            answer = await client.post("/fhir", json=sent, headers={**doctor, **FHIR})
            assert answer.status_code == 400, (kind, where, answer.text)
            issue = outcome(answer)["issue"][0]
            assert where in (issue.get("expression") or [""])[0] + issue["diagnostics"], issue
    search = f"Condition?patient={curp}&code="  # a blank value is refused, as by URL
    answer = await client.post(
        "/fhir",
        json=transaction({"request": {"method": "GET", "url": search}}),
        headers={**doctor, **FHIR},
    )
    assert answer.status_code == 400, answer.text
    direct = await client.get(f"/fhir/{search}", headers=doctor)
    assert direct.status_code == 400


async def test_deep_nesting_nul_characters_and_bad_parameters_are_400(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp, doctor = await treated(client, token_for)
    # 120 extensions nested one in another, and a 1,000-level object inside a Bundle.
    extension: dict[str, Any] = {"url": "http://x/e", "valueString": "a"}
    for _ in range(120):
        extension = {"url": "http://x/e", "extension": [extension]}
    nested = condition(curp, extension=[extension])
    answer = await client.post("/fhir/Condition", json=nested, headers=doctor)
    assert answer.status_code == 400, answer.text
    assert "anida" in outcome(answer)["issue"][0]["diagnostics"]
    deep = '{"x":' * 1000 + "1" + "}" * 1000
    basic = f'{{"resourceType":"Basic","code":{{"text":"a"}},"x":{deep}}}'
    for kind in ("transaction", "batch"):
        body = (f'{{"resourceType":"Bundle","type":"{kind}","entry":[{{"resource":{basic},'
                '"request":{"method":"POST","url":"Basic"}}]}')  # fmt: skip
        answer = await client.post("/fhir", content=body, headers={**doctor, **FHIR})
        assert answer.status_code == 400, (kind, answer.text)
    # U+0000: in a search value, an id, a resource's text (FHIR strings may not hold it).
    for url in (f"/fhir/Condition?patient={curp}%00", "/fhir/Condition?code=E11.9%00",
                f"/api/v1/persons?curp={curp}%00"):  # fmt: skip
        answer = await client.get(url, headers=doctor)
        assert answer.status_code == 400, (url, answer.text)
        assert "U+0000" in answer.text
    with_nul = condition(curp, note=[{"text": "a\u0000b"}])
    answer = await client.post("/fhir/Condition", json=with_nul, headers=doctor)
    assert answer.status_code == 400, answer.text
    assert "nulo" in outcome(answer)["issue"][0]["diagnostics"]
    escaped = condition(curp, note=[{"text": "ruta C:\\u0000"}])  # a backslash, then "u0000"
    assert (await client.post("/fhir/Condition", json=escaped, headers=doctor)).status_code == 201
    # $validate with a malformed Parameters.
    for parameter in (5, [1], "x"):
        body = {"resourceType": "Parameters", "parameter": parameter}
        answer = await client.post("/fhir/Condition/$validate", json=body, headers=doctor)
        assert answer.status_code == 400, (parameter, answer.text)
        assert outcome(answer)["issue"][0]["expression"] == ["Parameters.parameter"]
    missing = {"resourceType": "Parameters", "parameter": [{"name": "resource"}]}
    answer = await client.post("/fhir/Condition/$validate", json=missing, headers=doctor)
    assert answer.status_code == 400


async def test_a_patient_is_never_deleted_through_fhir(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp, doctor = await treated(client, token_for)
    writer = token_for(Role.CLIENT, scopes="system/*.write system/*.read")
    for headers in (doctor, writer):
        answer = await client.delete(f"/fhir/Patient/{curp}", headers=headers)
        assert answer.status_code == 405, answer.text
        assert "padrón" in outcome(answer)["issue"][0]["diagnostics"]
    entry = {"request": {"method": "DELETE", "url": f"Patient/{curp}"}}
    answer = await client.post("/fhir", json=transaction(entry), headers={**doctor, **FHIR})
    assert answer.status_code == 405, answer.text
    assert (await client.get(f"/fhir/Patient/{curp}", headers=doctor)).status_code == 200
    gone = await client.delete("/fhir/AuditEvent/1", headers=writer)
    assert gone.status_code in (404, 405), gone.text


async def test_a_refusal_inside_a_transaction_stays_on_the_persons_record(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """The transaction rolls back, its refusals do not: the person sees that this clinician
    tried to read their record without a basis."""
    mine, theirs = await patient(client), await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, mine, doctor)
    bundle = transaction(
        {"resource": condition(mine), "request": {"method": "POST", "url": "Condition"}},
        {"request": {"method": "GET", "url": f"Condition?patient={theirs}"}},
    )
    answer = await client.post("/fhir", json=bundle, headers={**doctor, **FHIR})
    assert answer.status_code == 403, answer.text
    me = token_for(Role.CITIZEN, curp=theirs)
    log = (await client.get(f"/api/v1/persons/{theirs}/accesses", headers=me)).json()["items"]
    refused = [(e["actor"], e["action"]) for e in log if e["outcome"] == "denied"]
    assert ("medica.imss", "records:Condition:search") in refused
    own = token_for(Role.CITIZEN, curp=mine)
    mine_log = (await client.get(f"/api/v1/persons/{mine}/accesses", headers=own)).json()["items"]
    # Nothing was written: no create is on the record of the person it was for.
    assert not [e for e in mine_log if e["action"] == "records:Condition:create"]


async def test_a_patient_search_records_each_persons_actual_basis(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """The purpose on each person's entry is the basis the record was opened on, not what the
    client declared in X-Salud-Purpose."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "dr.urgencias")
    reason = "paciente inconsciente, sin acompañante ni identificación"
    opened = await client.post(
        f"/api/v1/persons/{curp}/emergency-access", headers=doctor, json={"reason": reason}
    )
    assert opened.status_code == 201, opened.text
    answer = await client.get(
        "/fhir/Patient",
        params={"_id": curp},
        headers={**doctor, "X-Salud-Purpose": "revision de resultados"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["total"] == 1
    me = token_for(Role.CITIZEN, curp=curp)
    log = (await client.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    shown = [e for e in log if e["action"] == "records:Patient:search"]
    assert [(e["purpose"], e["reason"]) for e in shown] == [("emergency", reason)]


@pytest.mark.postgresql
async def test_a_nul_in_a_rest_body_is_a_400_where_the_database_refuses_it(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """The safety net: a text with U+0000 that no model refused (a free-text reason) reaches
    PostgreSQL, which cannot hold it: a 400 problem that says so, not a 500."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "dr.urgencias")
    reason = "paciente inconsciente traído por ambulancia\u0000 sin acompañante"
    answer = await client.post(
        f"/api/v1/persons/{curp}/emergency-access", headers=doctor, json={"reason": reason}
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "U+0000" in answer.json()["detail"]


async def test_search_values_too_many_empty_or_bare_ids_are_handled_by_name(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Hundreds of values were one condition each: 500 of them overflowed SQLite's expression
    depth (a 500), 33,000 `_id` values in a batch entry PostgreSQL's parameter limit. An empty
    reference or `_id` matched nothing (a 200), and a bare id of `encounter` too."""
    curp, doctor = await treated(client, token_for)
    visit = {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{curp}"},
    }  # fmt: skip
    encounter = (await client.post("/fhir/Encounter", json=visit, headers=doctor)).json()["id"]
    made = await client.post(
        "/fhir/Condition", json=condition(curp, encounter={"reference": f"Encounter/{encounter}"}),
        headers=doctor,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    base = f"/fhir/Condition?patient={curp}"
    for query in (f"encounter={encounter}", f"encounter=Encounter/{encounter}",
                  f"encounter=Encounter/{encounter}/_history/1", f"patient={curp}"):  # fmt: skip
        found = await client.get(f"{base}&{query}", headers=doctor)
        assert found.json()["total"] == 1, (query, found.text)

    many = ",".join(f"c{n}" for n in range(500))
    for query, field in ((f"code={many}", None), ("encounter=", "encounter"), ("_id=", "_id"),
                         ("_id=a,,b", "_id"), ("encounter=Encounter/", "encounter"),
                         (f"subject={curp}", "subject")):  # fmt: skip
        refused = await client.get(f"{base}&{query}", headers=doctor)
        assert refused.status_code == 400, (query, refused.text)
        issue = outcome(refused)["issue"][0]
        if field:
            assert issue["expression"] == [field], query
        else:
            assert "hasta 100" in issue["diagnostics"]
    ids = ",".join(f"i{n}" for n in range(33_000))
    entry = {"request": {"method": "GET", "url": f"Condition?patient={curp}&_id={ids}"}}
    answer = await client.post("/fhir", json=transaction(entry, kind="batch"), headers=doctor)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["entry"][0]["response"]["status"].startswith("400")


async def test_a_search_by_post_is_the_same_search_and_odd_ones_are_named(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """POST Type/_search (R4 §3.1.1.1) answered a 405 problem+json; a date prefix the
    server does not take was called "not a date"; a search of a type kept by id only was a
    404 "type not supported" though the type is read and written."""
    curp, doctor = await treated(client, token_for)
    assert (await client.post("/fhir/Condition", json=condition(curp), headers=doctor)).is_success
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    by_post = await client.post(
        "/fhir/Condition/_search?code=E11.9", content=f"patient={curp}",
        headers={**doctor, **form},
    )  # fmt: skip
    assert by_post.status_code == 200, by_post.text
    by_get = await client.get(f"/fhir/Condition?patient={curp}&code=E11.9", headers=doctor)
    assert by_post.json()["total"] == by_get.json()["total"] == 1
    assert [e["resource"]["id"] for e in by_post.json()["entry"]] == [
        e["resource"]["id"] for e in by_get.json()["entry"]
    ]
    json_body = await client.post("/fhir/Condition/_search", json={"patient": curp}, headers=doctor)
    assert json_body.status_code == 415
    outcome(json_body)
    anonymous = await client.post(
        "/fhir/Condition/_search", content=f"patient={curp}", headers={**form, "Authorization": ""}
    )
    assert anonymous.status_code == 401
    admin = token_for(Role.SYSTEM_ADMIN)  # accounts and keys only: no record
    refused_role = await client.post(
        "/fhir/Condition/_search", content=f"patient={curp}", headers={**admin, **form}
    )
    assert refused_role.status_code == 403
    for query, field in (("date=sa2026-01-01", "date"), ("date=ap2026", "date")):
        refused = await client.get(f"/fhir/Encounter?patient={curp}&{query}", headers=doctor)
        assert refused.status_code == 400
        assert "prefijo" in outcome(refused)["issue"][0]["diagnostics"]
        assert outcome(refused)["issue"][0]["expression"] == [field]
    kept = await client.get(f"/fhir/CarePlan?subject=Patient/{curp}", headers=doctor)
    assert kept.status_code == 400
    assert "$everything" in outcome(kept)["issue"][0]["diagnostics"]


async def test_a_contained_resource_of_no_type_and_a_resource_changed_twice_are_400(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A contained resource whose type the models do not know raised a bare KeyError (a 500,
    the end of a bulk import); a transaction that deleted and updated one resource wrote
    both (R4 fails it)."""
    curp, doctor = await treated(client, token_for)
    for bad in ("Bogus", "patient", "", 5, "MedicinalProduct", None):
        doc = {**condition(curp), "contained": [{"resourceType": bad, "id": "x"}]}
        # A write is refused (400); $validate answers its verdict (200, the error named).
        for answer, status in (
            (await client.post("/fhir/Condition", json=doc, headers=doctor), 400),
            (await client.post("/fhir/Condition/$validate", json=doc, headers=doctor), 200),
        ):
            assert answer.status_code == status, (bad, answer.text)
            issue = outcome(answer)["issue"][0]
            assert issue["severity"] == "error"
            assert issue["expression"] == ["Condition.contained[0].resourceType"], bad
    made = await client.post("/fhir/Condition", json=condition(curp), headers=doctor)
    rid = made.json()["id"]
    twice = transaction(
        {"request": {"method": "DELETE", "url": f"Condition/{rid}"}},
        {"resource": {**condition(curp), "id": rid},
         "request": {"method": "PUT", "url": f"Condition/{rid}"}},
    )  # fmt: skip
    refused = await client.post("/fhir", json=twice, headers=doctor)
    assert refused.status_code == 400, refused.text
    assert outcome(refused)["issue"][0]["expression"] == ["Bundle.entry[1].request.url"]
    assert (await client.get(f"/fhir/Condition/{rid}", headers=doctor)).json()["meta"][
        "versionId"
    ] == "1"
