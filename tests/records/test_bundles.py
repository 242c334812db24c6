"""transaction and batch Bundles: all or nothing, references between entries resolved."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class

from salud.access.permissions import Role
from tests.conftest import TokenFor
from tests.records.test_fhir_api import IMSS_UNIT, cared_for, clinician, condition, outcome, patient

pytestmark = pytest.mark.db


def visit(
    curp: str, encounter_url: str = "urn:uuid:11111111-1111-1111-1111-111111111111"
) -> dict[str, Any]:
    """An encounter with a diagnosis and a vital sign that point at it (a forward reference
    first: the Condition comes before the Encounter it names)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
                "resource": condition(curp, encounter={"reference": encounter_url}),
                "request": {"method": "POST", "url": "Condition"},
            },
            {
                "fullUrl": encounter_url,
                "resource": {"resourceType": "Encounter", "status": "finished",
                             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                       "code": "AMB"},
                             "subject": {"reference": f"Patient/{curp}"}},
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "resource": {"resourceType": "Observation", "status": "final",
                             "code": {"text": "Presión arterial sistólica"},
                             "subject": {"reference": f"Patient/{curp}"},
                             "encounter": {"reference": encounter_url},
                             "valueQuantity": {"value": 128, "unit": "mm[Hg]"}},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }  # fmt: skip


async def test_a_transaction_is_all_or_nothing_with_references_resolved(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    first = visit(curp)
    # A read in the same transaction (processed last, as FHIR orders them) sees the writes.
    first["entry"].append({"request": {"method": "GET", "url": f"Condition?patient={curp}"}})
    answer = await client.post("/fhir", json=first, headers=doctor)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    get_fhir_model_class("Bundle").model_validate(result)
    assert result["type"] == "transaction-response"
    assert [e["response"]["status"] for e in result["entry"]] == ["201 Created"] * 3 + ["200 OK"]
    assert result["entry"][3]["resource"]["total"] == 1
    encounter_id = result["entry"][1]["response"]["location"].split("/")[1]
    diagnoses = (await client.get(f"/fhir/Condition?patient={curp}", headers=doctor)).json()
    assert diagnoses["entry"][0]["resource"]["encounter"] == {
        "reference": f"Encounter/{encounter_id}"
    }
    by_encounter = await client.get(
        f"/fhir/Observation?patient={curp}&encounter=Encounter/{encounter_id}", headers=doctor
    )
    assert by_encounter.json()["total"] == 1

    # One bad entry (an unknown CIE-10 code) and nothing of the bundle is kept.
    broken = visit(curp, "urn:uuid:33333333-3333-3333-3333-333333333333")
    broken["entry"][0]["resource"] = condition(curp, "Q99.99")
    failed = await client.post("/fhir", json=broken, headers=doctor)
    assert failed.status_code == 422
    assert "entrada 0" in outcome(failed)["issue"][0]["diagnostics"]
    auditor = token_for(Role.AUDITOR)
    log = (await client.get("/api/v1/audit/events?action=records:Bundle:transaction",
                            headers=auditor)).json()["items"]  # fmt: skip
    assert [e["outcome"] for e in log] == ["denied"]
    for kind, expected in (("Condition", 1), ("Encounter", 1), ("Observation", 1)):
        found = await client.get(f"/fhir/{kind}?patient={curp}", headers=doctor)
        assert found.json()["total"] == expected, kind
    dangling = visit(curp)
    dangling["entry"].pop(1)  # the Encounter the others point at is missing
    nowhere = await client.post("/fhir", json=dangling, headers=doctor)
    assert nowhere.status_code == 422
    assert (await client.get(f"/fhir/Observation?patient={curp}", headers=doctor)).json()[
        "total"
    ] == 1


async def test_a_batch_answers_each_entry_on_its_own(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    post = {"method": "POST", "url": "Condition"}
    batch = {
        "resourceType": "Bundle", "type": "batch",
        "entry": [
            {"resource": condition(curp), "request": post},
            {"resource": condition(curp, "Q99.99"), "request": post},
            {"request": {"method": "GET", "url": f"Condition?patient={curp}"}},
        ],
    }  # fmt: skip
    answer = await client.post("/fhir", json=batch, headers=doctor)
    assert answer.status_code == 200, answer.text
    entries = answer.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "422"
    assert entries[1]["response"]["outcome"]["issue"][0]["code"] == "code-invalid"
    assert entries[2]["resource"]["total"] == 1
    wrong = await client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=doctor
    )
    assert wrong.status_code == 400
    # PATCH is not served: refused, never taken for a PUT of the resource it carries.
    entry = {"resource": condition(curp), "request": {"method": "PATCH", "url": "Condition/x"}}
    patch = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    refused = await client.post("/fhir", json=patch, headers=doctor)
    assert refused.status_code == 400
    assert outcome(refused)["issue"][0]["expression"] == ["Bundle.entry[0].request.method"]


async def test_include_and_revinclude_stay_within_the_persons_record(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    result = (await client.post("/fhir", json=visit(curp), headers=doctor)).json()
    encounter = result["entry"][1]["response"]["location"].split("/_history")[0]
    included = await client.get(
        f"/fhir/Observation?patient={curp}&_include=Observation:encounter"
        "&_include=Observation:subject",
        headers=doctor,
    )
    assert included.status_code == 200, included.text
    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in included.json()["entry"]]
    assert modes == [("Observation", "match"), ("Encounter", "include"), ("Patient", "include")]
    rev = await client.get(
        f"/fhir/Encounter?patient={curp}&_revinclude=Condition:encounter"
        "&_revinclude=Observation:encounter",
        headers=doctor,
    )
    kinds = sorted(e["resource"]["resourceType"] for e in rev.json()["entry"])
    assert kinds == ["Condition", "Encounter", "Observation"]
    assert rev.json()["entry"][0]["fullUrl"].endswith(encounter)
    bad = await client.get(
        f"/fhir/Encounter?patient={curp}&_include=Encounter:code", headers=doctor
    )
    assert bad.status_code == 400
    assert "_include" in outcome(bad)["issue"][0]["diagnostics"]
    # `Type:param:Target` keeps only targets of that type; a wrong or extra part is refused.
    only = await client.get(
        f"/fhir/Observation?patient={curp}&_include=Observation:subject:Group", headers=doctor
    )
    assert [e["search"]["mode"] for e in only.json()["entry"]] == ["match"]  # no Group: none
    typed = await client.get(
        f"/fhir/Observation?patient={curp}&_include=Observation:subject:Patient", headers=doctor
    )
    assert [e["resource"]["resourceType"] for e in typed.json()["entry"]] == [
        "Observation",
        "Patient",
    ]
    for odd in ("Observation:encounter:iterate", "Observation:encounter:Encounter:x"):
        refused = await client.get(
            f"/fhir/Observation?patient={curp}&_include={odd}", headers=doctor
        )
        assert refused.status_code == 400, odd
    wrong_target = await client.get(
        f"/fhir/Encounter?patient={curp}&_revinclude=Condition:encounter:Patient", headers=doctor
    )
    assert wrong_target.status_code == 400


async def test_included_types_are_reads_of_their_own_for_a_machine_client(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A client allowed Observations only does not get Encounters or the Patient through
    _include, nor Conditions through _revinclude; an included Patient is a Patient read."""
    from salud.access.principal import Principal
    from salud.access.tokens import TokenService

    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    assert (await client.post("/fhir", json=visit(curp), headers=doctor)).status_code == 200
    app_tokens: TokenService = client._transport.app.state.tokens  # type: ignore[attr-defined]

    def machine(*scopes: str) -> dict[str, str]:
        his = Principal("client:his", "his.hospital", Role.CLIENT, 2, scopes=frozenset(scopes))
        return {"Authorization": f"Bearer {app_tokens.issue(his)}"}

    narrow = machine("system/Observation.read", "system/Encounter.read")
    observations = f"/fhir/Observation?patient={curp}"
    for include, missing in (("Observation:encounter", None), ("Observation:subject", "Patient")):
        answer = await client.get(f"{observations}&_include={include}", headers=narrow)
        if missing is None:
            kinds = [e["resource"]["resourceType"] for e in answer.json()["entry"]]
            assert kinds == ["Observation", "Encounter"], answer.text
        else:
            assert answer.status_code == 403
            assert missing in outcome(answer)["issue"][0]["diagnostics"]
    only = machine("system/Observation.read")
    answer = await client.get(f"{observations}&_include=Observation:encounter", headers=only)
    assert answer.status_code == 403
    assert "Encounter" in outcome(answer)["issue"][0]["diagnostics"]
    revinclude = f"/fhir/Encounter?patient={curp}&_revinclude=Condition:encounter"
    answer = await client.get(revinclude, headers=narrow)
    assert answer.status_code == 403
    assert "Condition" in outcome(answer)["issue"][0]["diagnostics"]

    wide = machine("system/Observation.read", "system/Patient.read")
    answer = await client.get(f"{observations}&_include=Observation:subject", headers=wide)
    assert [e["resource"]["resourceType"] for e in answer.json()["entry"]] == [
        "Observation", "Patient",
    ]  # fmt: skip
    me = token_for(Role.CITIZEN, curp=curp)
    log = (await client.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    patient_reads = [
        (e["outcome"]) for e in log
        if e["action"] == "records:Patient:read" and e["actor"] == "his.hospital"
    ]  # fmt: skip
    assert sorted(patient_reads) == ["denied", "success"]


async def test_bad_paging_and_versions_are_400_and_conditional_create_works_for_shared_types(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    bad_count = await client.get("/fhir/Practitioner/_history?_count=muchos", headers=doctor)
    assert bad_count.status_code == 400
    assert outcome(bad_count)["issue"][0]["expression"] == ["_count"]
    # Organization and Location mirror the catalogs (records/mirror.py): Practitioner is a
    # type that belongs to nobody's record and is still written through the API.
    doc = {
        "resourceType": "Practitioner",
        "name": [{"family": "Pérez", "given": ["Ana"]}],
        "identifier": [{"system": "https://www.cedulaprofesional.sep.gob.mx", "value": "1234567"}],
    }
    condition_header = {
        **doctor,
        "If-None-Exist": "identifier=https://www.cedulaprofesional.sep.gob.mx|1234567",
    }
    first = await client.post("/fhir/Practitioner", json=doc, headers=condition_header)
    assert first.status_code == 201, first.text
    again = await client.post("/fhir/Practitioner", json=doc, headers=condition_header)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    # The header is a query string: URL-encoded, it names the same search.
    encoded = {**doctor, "If-None-Exist": "identifier=https%3A%2F%2Fwww.cedulaprofesional.sep"
               ".gob.mx%7C1234567"}  # fmt: skip
    third = await client.post("/fhir/Practitioner", json=doc, headers=encoded)
    assert third.status_code == 200
    assert third.json()["id"] == first.json()["id"]
    for bad in (
        "identifier",
        "",
        "=1234567",
        "identifier=",
        "identifier=https://www.cedulaprofesional.sep.gob.mx|1234567&_offset=1",
    ):
        vague = await client.post(
            "/fhir/Practitioner", json=doc, headers={**doctor, "If-None-Exist": bad}
        )
        assert vague.status_code == 400, bad
        assert outcome(vague)["issue"][0]["expression"] == ["If-None-Exist"]
    doc_id = first.json()["id"]
    put = {"method": "PUT", "url": f"Practitioner/{doc_id}", "ifMatch": "ayer"}
    stale = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {**doc, "id": doc_id}, "request": put}],
    }
    refused = await client.post("/fhir", json=stale, headers=doctor)
    assert refused.status_code == 400
    assert "ifMatch" in outcome(refused)["issue"][0]["expression"][0]
    header = await client.put(
        f"/fhir/Practitioner/{first.json()['id']}", json={**doc, "id": first.json()["id"]},
        headers={**doctor, "If-Match": "W/\"uno\""},
    )  # fmt: skip
    assert header.status_code == 400


async def test_a_bundle_get_that_is_not_a_search_or_a_read_is_refused_not_misread(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """`Condition/{id}/_history/1` inside a batch used to answer the current version, and
    `Patient/X/$everything` the Patient alone; the Patient's vread answered the current
    version under any number."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    made = (await client.post("/fhir/Condition", json=condition(curp), headers=doctor)).json()
    urls = [f"Condition/{made['id']}/_history/1", f"Patient/{curp}/$everything",
            f"Condition/{made['id']}/_history", f"Condition/{made['id']}"]  # fmt: skip
    batch = {"resourceType": "Bundle", "type": "batch",
             "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}  # fmt: skip
    answer = await client.post("/fhir", json=batch, headers=doctor)
    assert answer.status_code == 200, answer.text
    statuses = [e["response"]["status"][:3] for e in answer.json()["entry"]]
    assert statuses == ["400", "400", "400", "200"]
    assert (await client.get(f"/fhir/Patient/{curp}/_history/1", headers=doctor)).status_code == 200
    other = await client.get(f"/fhir/Patient/{curp}/_history/999", headers=doctor)
    assert other.status_code == 404
    assert "/history" in outcome(other)["issue"][0]["diagnostics"]


def _practitioner(cedula: str, family: str = "Pérez") -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "name": [{"family": family, "given": ["Ana"]}],
        "identifier": [{"system": "https://www.cedulaprofesional.sep.gob.mx", "value": cedula}],
    }


def _visit_by(curp: str, cedula: str, condition_text: str | None = None) -> dict[str, Any]:
    """A diagnosis recorded by a practitioner sent along, created only if not yet there."""
    author = "urn:uuid:44444444-4444-4444-4444-444444444444"
    post = {"method": "POST", "url": "Practitioner",
            "ifNoneExist": condition_text
            or f"identifier=https://www.cedulaprofesional.sep.gob.mx|{cedula}"}  # fmt: skip
    return {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:55555555-5555-5555-5555-555555555555",
             "resource": condition(curp, recorder={"reference": author}),
             "request": {"method": "POST", "url": "Condition"}},
            {"fullUrl": author, "resource": _practitioner(cedula), "request": post},
        ],
    }  # fmt: skip


async def test_conditional_create_inside_bundles_finds_what_exists_and_names_it(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """`request.ifNoneExist` (R4 §3.1.0.11.2): an institution sends the practitioner with
    every visit; the first transaction creates them, the next ones find them, and the
    diagnosis points at the one practitioner either way."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    first = await client.post("/fhir", json=_visit_by(curp, "7654321"), headers=doctor)
    assert first.status_code == 200, first.text
    assert [e["response"]["status"] for e in first.json()["entry"]] == ["201 Created"] * 2
    made = first.json()["entry"][1]["response"]["location"].split("/")[1]
    second = await client.post("/fhir", json=_visit_by(curp, "7654321"), headers=doctor)
    assert second.status_code == 200, second.text
    statuses = [e["response"]["status"] for e in second.json()["entry"]]
    assert statuses == ["201 Created", "200 OK"]
    assert second.json()["entry"][1]["response"]["location"] == f"Practitioner/{made}/_history/1"
    found = await client.get(
        "/fhir/Practitioner?identifier=https://www.cedulaprofesional.sep.gob.mx|7654321",
        headers=doctor,
    )
    assert found.json()["total"] == 1
    diagnoses = (await client.get(f"/fhir/Condition?patient={curp}", headers=doctor)).json()
    recorders = {e["resource"]["recorder"]["reference"] for e in diagnoses["entry"]}
    assert recorders == {f"Practitioner/{made}"}
    # Written as a query string with its type first (as Bundle-xds does), it is the same.
    typed = _visit_by(curp, "7654321", "Practitioner?identifier=https%3A%2F%2Fwww."
                      "cedulaprofesional.sep.gob.mx%7C7654321")  # fmt: skip
    again = await client.post("/fhir", json=typed, headers=doctor)
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["201 Created", "200 OK"]

    # Two practitioners with one cédula: the condition is ambiguous, a 412, nothing written.
    twin = await client.post("/fhir/Practitioner", json=_practitioner("7654321", "Gómez"),
                             headers=doctor)  # fmt: skip
    assert twin.status_code == 201
    ambiguous = await client.post("/fhir", json=_visit_by(curp, "7654321"), headers=doctor)
    assert ambiguous.status_code == 412
    assert "entrada 1" in outcome(ambiguous)["issue"][0]["diagnostics"]
    count = (await client.get(f"/fhir/Condition?patient={curp}", headers=doctor)).json()["total"]
    assert count == 3

    # Refused by name, never ignored: a condition naming another type, control parameters,
    # an ifNoneExist on a PUT, and the other conditional headers.
    for bad in ("Condition?identifier=x|1", "identifier=x|1&_count=1", "identifier"):
        wrong = await client.post("/fhir", json=_visit_by(curp, "1", bad), headers=doctor)
        assert wrong.status_code == 400, bad
        assert outcome(wrong)["issue"][0]["expression"] == ["Bundle.entry[1].request.ifNoneExist"]
    put = {"method": "PUT", "url": f"Practitioner/{made}", "ifNoneExist": "identifier=x|1"}
    entry = {"resource": {**_practitioner("7654321"), "id": made}, "request": put}
    refused = await client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]},
        headers=doctor,
    )  # fmt: skip
    assert refused.status_code == 400
    assert "ifNoneExist" in outcome(refused)["issue"][0]["diagnostics"]

    # In a batch, each entry on its own: the match answers 200, a new one is created.
    post = {
        "method": "POST",
        "url": "Practitioner",
        "ifNoneExist": "identifier=https://www.cedulaprofesional.sep.gob.mx|1112223",
    }
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": _practitioner("1112223"), "request": post}] * 2,
    }
    answered = await client.post("/fhir", json=batch, headers=doctor)
    assert [e["response"]["status"] for e in answered.json()["entry"]] == ["201 Created", "200 OK"]

    # A condition never answers whom the create itself would refuse: a read-only type (the
    # catalog's Organization) is 405 as its own POST is, and a role that may not write is 403
    # even where the condition would find a match.
    org = {"resourceType": "Organization", "name": "IMSS"}
    post = {"method": "POST", "url": "Organization", "ifNoneExist": "_id=inst-2"}  # it exists
    mirrored = {"resourceType": "Bundle", "type": "batch",
                "entry": [{"resource": org, "request": post}]}  # fmt: skip
    statuses = (await client.post("/fhir", json=mirrored, headers=doctor)).json()["entry"]
    assert statuses[0]["response"]["status"] == "405"
    reception = token_for(Role.VERIFIER, clues=IMSS_UNIT)
    for_them = await client.post("/fhir", json=batch, headers=reception)
    assert {e["response"]["status"] for e in for_them.json()["entry"]} == {"403"}


_CEDULAS = "https://www.cedulaprofesional.sep.gob.mx"


def _two_practitioners(first: str, second: str) -> dict[str, Any]:
    """A transaction that sends two practitioners, each created only if not yet there."""
    return {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": _practitioner(cedula),
             "request": {"method": "POST", "url": "Practitioner",
                         "ifNoneExist": f"identifier={_CEDULAS}|{cedula}"}}
            for cedula in (first, second)
        ],
    }  # fmt: skip


async def test_conditional_creates_sent_at_once_create_one_resource(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Two systems (or one retrying after a timeout) send the same practitioner at the same
    moment: one request creates them and the others find them, never two. The same with the
    header, inside transactions, and with two conditions in opposite orders (no deadlock)."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)

    async def count(cedula: str) -> int:
        found = await client.get(
            f"/fhir/Practitioner?identifier={_CEDULAS}|{cedula}", headers=doctor
        )
        total: int = found.json()["total"]
        return total

    header = {**doctor, "If-None-Exist": f"identifier={_CEDULAS}|3330001"}
    answers = await asyncio.gather(
        *(client.post("/fhir/Practitioner", json=_practitioner("3330001"), headers=header)
          for _ in range(6))
    )  # fmt: skip
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert await count("3330001") == 1

    visits = await asyncio.gather(
        *(client.post("/fhir", json=_visit_by(curp, "3330002"), headers=doctor) for _ in range(6))
    )
    assert {v.status_code for v in visits} == {200}, [v.text for v in visits]
    statuses = sorted(v.json()["entry"][1]["response"]["status"] for v in visits)
    assert statuses == ["200 OK"] * 5 + ["201 Created"]
    assert await count("3330002") == 1

    crossed = await asyncio.gather(
        *(client.post("/fhir", json=_two_practitioners(*pair), headers=doctor)
          for pair in [("3330003", "3330004"), ("3330004", "3330003")] * 3)
    )  # fmt: skip
    assert {c.status_code for c in crossed} == {200}, [c.text for c in crossed]
    assert await count("3330003") == 1
    assert await count("3330004") == 1

    # One transaction sending the same practitioner twice (worded differently): if nothing
    # is found both would create, so a 400; once they exist, both entries find them.
    twice = _two_practitioners("3330005", "3330005")
    twice["entry"][1]["request"]["ifNoneExist"] = (
        f"Practitioner?identifier={_CEDULAS.replace(':', '%3A')}%7C3330005"
    )
    refused = await client.post("/fhir", json=twice, headers=doctor)
    assert refused.status_code == 400
    issue = outcome(refused)["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].request.ifNoneExist"]
    assert "entrada 0" in issue["diagnostics"]
    assert await count("3330005") == 0
    made = await client.post("/fhir/Practitioner", json=_practitioner("3330005"), headers=doctor)
    assert made.status_code == 201
    found = await client.post("/fhir", json=twice, headers=doctor)
    assert [e["response"]["status"] for e in found.json()["entry"]] == ["200 OK"] * 2
    assert await count("3330005") == 1


async def test_a_conditional_create_refused_at_its_search_is_audited(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A client that may write Conditions but not read them passes the create's own checks
    and is refused at the search: that refusal is recorded and stays recorded, though the
    request's transaction rolls back (alone, and in a batch entry)."""
    from salud.access.principal import Principal
    from salud.access.tokens import TokenService

    curp = await patient(client)
    app_tokens: TokenService = client._transport.app.state.tokens  # type: ignore[attr-defined]
    his = Principal("client:his", "his.hospital", Role.CLIENT, 2,
                    scopes=frozenset({"system/Condition.write"}))  # fmt: skip
    writer = {"Authorization": f"Bearer {app_tokens.issue(his)}"}
    diagnosis = condition(curp)
    diagnosis["identifier"] = [{"system": "https://his.example/dx", "value": "1"}]
    condition_text = "identifier=https://his.example/dx|1"
    alone = await client.post("/fhir/Condition", json=diagnosis,
                              headers={**writer, "If-None-Exist": condition_text})  # fmt: skip
    assert alone.status_code == 403, alone.text
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": diagnosis,
         "request": {"method": "POST", "url": "Condition", "ifNoneExist": condition_text}},
    ]}  # fmt: skip
    answered = await client.post("/fhir", json=batch, headers=writer)
    assert answered.json()["entry"][0]["response"]["status"] == "403"
    auditor = token_for(Role.AUDITOR)
    log = (await client.get("/api/v1/audit/events?actor=his.hospital",
                            headers=auditor)).json()["items"]  # fmt: skip
    denied = [e for e in log if e["outcome"] == "denied" and e["person_curp"] == curp]
    assert len(denied) == 2, log
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    kept = await client.get(f"/fhir/Condition?patient={curp}", headers=doctor)
    assert kept.json()["total"] == 0


async def test_puts_creating_one_id_at_once_create_it_once(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Update-as-create of one new id sent six times at once: one creates it, the others
    update it or are told to read again (409 OperationOutcome), never a 500."""
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    doc = {**_practitioner("3330009"), "id": "medica-3330009"}
    answers = await asyncio.gather(
        *(client.put("/fhir/Practitioner/medica-3330009", json=doc, headers=doctor)
          for _ in range(6))
    )  # fmt: skip
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 1, [a.text for a in answers]
    assert set(codes) <= {200, 201, 409}
    for refused in (a for a in answers if a.status_code == 409):
        assert outcome(refused)["issue"][0]["code"] == "conflict"
    read = await client.get("/fhir/Practitioner/medica-3330009", headers=doctor)
    assert read.status_code == 200
    assert int(read.json()["meta"]["versionId"]) == codes.count(200) + 1


def _named_practitioner(family: str, fhir_id: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"resourceType": "Practitioner", "name": [{"family": family}]}
    return {**doc, "id": fhir_id} if fhir_id else doc


@pytest.mark.postgresql
async def test_transactions_changing_the_same_resources_in_other_orders_both_commit(
    anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """[PUT X, PUT Y] and [PUT Y, PUT X] at once: each once held one row while waiting for the
    other's, and PostgreSQL broke the deadlock with a 500. Their rows are now locked together,
    in one order, before either is touched."""
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    ids = []
    for n in range(2):
        made = await anonymous.post(
            "/fhir/Practitioner", json=_named_practitioner(f"P{n}"), headers=doctor
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])

    def both(order: list[str], tag: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _named_practitioner(tag, i),
             "request": {"method": "PUT", "url": f"Practitioner/{i}"}}
            for i in order
        ]}  # fmt: skip

    for round_ in range(6):
        answers = await asyncio.gather(
            anonymous.post("/fhir", json=both(ids, f"a{round_}"), headers=doctor),
            anonymous.post("/fhir", json=both(ids[::-1], f"b{round_}"), headers=doctor),
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    for i in ids:
        final = (await anonymous.get(f"/fhir/Practitioner/{i}", headers=doctor)).json()
        assert final["meta"]["versionId"] == "13"


async def test_a_race_in_one_batch_entry_is_that_entrys_answer(
    anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Batches creating the same new id at once: the entry that loses the race answers 409,
    and the batch, whose other entries were committed, answers 200 with each entry's
    outcome (it answered 409 for the whole batch, so a client repeated committed entries)."""
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    fixed = f"p-{uuid.uuid4().hex[:12]}"

    def batch(n: int) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": _named_practitioner(f"Alta{n}"),
             "request": {"method": "POST", "url": "Practitioner"}},
            {"resource": _named_practitioner(f"Fija{n}", fixed),
             "request": {"method": "PUT", "url": f"Practitioner/{fixed}"}},
        ]}  # fmt: skip

    answers = await asyncio.gather(
        *(anonymous.post("/fhir", json=batch(n), headers=doctor) for n in range(8))
    )
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    statuses = [a.json()["entry"][1]["response"]["status"] for a in answers]
    assert all(a.json()["entry"][0]["response"]["status"].startswith("201") for a in answers)
    assert all(s.startswith(("200", "201", "409")) for s in statuses), statuses
    for a, status in zip(answers, statuses, strict=True):
        if status.startswith("409"):
            assert a.json()["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "conflict"


async def test_a_transaction_rewrites_its_links_in_the_narrative_too(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """R4 §3.1.0.11.2: the server replaces an entry's full URL wherever a link to it stands:
    references, and <a href> / <img src> in the narrative; an identifier keeps its value."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    bundle = visit(curp)
    encounter_url = bundle["entry"][1]["fullUrl"]
    bundle["entry"][0]["resource"]["text"] = {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Dx en la '
        f'<a href="{encounter_url}">consulta</a></div>',
    }
    bundle["entry"][0]["resource"]["identifier"] = [
        {"system": "urn:ietf:rfc:3986", "value": encounter_url}
    ]
    result = await client.post("/fhir", json=bundle, headers=doctor)
    assert result.status_code == 200, result.text
    locations = [e["response"]["location"].split("/_history")[0] for e in result.json()["entry"]]
    condition_at, encounter_at = locations[0], locations[1]
    stored = (await client.get(f"/fhir/{condition_at}", headers=doctor)).json()
    assert f'href="{encounter_at}"' in stored["text"]["div"]
    assert "urn:uuid" not in stored["text"]["div"]
    assert stored["identifier"][0]["value"] == encounter_url  # not a link: left as it is
