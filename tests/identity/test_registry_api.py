"""The registry over HTTP, on the test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from salud.access.permissions import Role
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db

BASE = "/api/v1/persons"


def _fields(problem: dict[str, object]) -> set[str]:
    errors = problem.get("errors")
    assert isinstance(errors, list)
    return {e["field"] for e in errors}


async def test_create_then_read_by_curp(client: httpx.AsyncClient) -> None:
    doc = person_doc(organ_donor="yes", organ_donor_date="2024-05-02", phone="+527711234567")
    created = await client.post(BASE, json=doc)
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == 'W/"1"'
    read = await client.get(f"{BASE}/{doc['curp']}")
    assert read.status_code == 200
    body = read.json()
    assert body["curp"] == doc["curp"]
    assert body["birth_state"] == "HG"  # taken from the CURP
    assert body["organ_donor"] == "yes"
    assert body["affiliations"][0]["institution"] == "IMSS"
    assert body["address"]["municipality"] == "048"
    assert body["version"] == 1


async def test_duplicate_curp_is_409(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    again = await client.post(BASE, json=doc)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert _fields(again.json()) == {"curp"}


async def test_concurrent_registration_of_one_curp_lands_once(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    answers = await asyncio.gather(*(client.post(BASE, json=doc) for _ in range(4)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 1
    assert set(codes) <= {201, 409}


async def test_invalid_curp_is_422_with_reason(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    bad = doc["curp"][:17] + str((int(doc["curp"][17]) + 1) % 10)
    answer = await client.post(BASE, json={**doc, "curp": bad})
    assert answer.status_code == 422
    problem = answer.json()
    assert _fields(problem) == {"curp"}
    assert "verificador" in problem["errors"][0]["reason"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"birth_date": "1901-01-01"}, "birth_date"),
        ({"nationality": "XYZ"}, "nationality"),
        ({"blood_type": "C+"}, "blood_type"),
        ({"organ_donor": "yes"}, "organ_donor_date"),
        ({"phone": "771 123 4567"}, "phone"),
        ({"email": "no-es-correo"}, "email"),
        ({"assigned_clues": "HG123"}, "assigned_clues"),
        ({"address": {"state": "40"}}, "address.state"),
        ({"address": {"state": "13", "municipality": "999"}}, "address"),
        (
            {"affiliations": [{"institution_code": 7, "valid_from": "2020-01-01"}]},
            "affiliations.0.institution_code",
        ),
        (
            {
                "affiliations": [
                    {"institution_code": 2, "valid_from": "2020-01-01", "valid_to": "2019-01-01"}
                ]
            },
            "affiliations.0",
        ),
        ({"given_names": "JUAN4"}, "given_names"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_bad_fields_are_named(
    client: httpx.AsyncClient, change: dict[str, object], field: str
) -> None:
    answer = await client.post(BASE, json={**person_doc(), **change})
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["status"] == 422
    named = _fields(problem)
    assert any(f == field or f.startswith(field) for f in named), named
    assert all(e["reason"] for e in problem["errors"])


async def test_malformed_json_is_422_not_500(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        BASE, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"


async def test_update_is_versioned_and_stale_version_refused(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    curp = doc["curp"]
    await client.post(BASE, json=doc)
    first = await client.patch(
        f"{BASE}/{curp}",
        json={"blood_type": "A-", "reason": "resultado de laboratorio"},
        headers={"If-Match": 'W/"1"'},
    )
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 2
    assert first.headers["ETag"] == 'W/"2"'
    stale = await client.patch(
        f"{BASE}/{curp}", json={"blood_type": "B+"}, headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert (await client.get(f"{BASE}/{curp}")).json()["blood_type"] == "A-"
    missing = await client.patch(f"{BASE}/{curp}", json={"blood_type": "B+"})
    assert missing.status_code == 422
    assert _fields(missing.json()) == {"If-Match"}
    for odd in ('W/"²"', "1" * 5000, 'W/"-1"'):  # digits to str.isdigit, not to int()
        answer = await client.patch(f"{BASE}/{curp}", json={"blood_type": "B+"},
                                    headers={"If-Match": odd.encode("latin-1")})  # fmt: skip
        assert answer.status_code == 422, odd
        assert _fields(answer.json()) == {"If-Match"}


async def test_history_lists_who_when_what(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    curp = doc["curp"]
    await client.post(BASE, json=doc)
    await client.patch(
        f"{BASE}/{curp}",
        json={"affiliations": [{"institution_code": 3, "valid_from": "2024-01-01"}]},
        headers={"If-Match": 'W/"1"'},
    )
    await client.patch(
        f"{BASE}/{curp}",
        json={"phone": "+525512345678", "reason": "cambio de teléfono"},
        headers={"If-Match": 'W/"2"'},
    )
    history = (await client.get(f"{BASE}/{curp}/history")).json()
    assert [v["version"] for v in history] == [1, 2, 3]
    assert history[0]["reason"] == "alta"
    assert {c["field"] for c in history[1]["changes"]} == {"affiliations"}
    assert history[1]["changes"][0]["old"][0]["institution_code"] == 2
    assert history[1]["changes"][0]["new"][0]["institution_code"] == 3
    assert history[2]["changes"] == [{"field": "phone", "old": None, "new": "+525512345678"}]
    assert history[2]["reason"] == "cambio de teléfono"
    assert all(v["recorded_by"] for v in history)


async def test_donor_rule_holds_on_update(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    await client.post(BASE, json=doc)
    answer = await client.patch(
        f"{BASE}/{doc['curp']}", json={"organ_donor": "no"}, headers={"If-Match": 'W/"1"'}
    )
    assert answer.status_code == 422
    assert _fields(answer.json()) == {"organ_donor_date"}


async def test_search_by_name_and_birth_date_and_state(client: httpx.AsyncClient) -> None:
    a = person_doc(first_surname="NÚÑEZ", given_names="LUCÍA", birth_date="1980-02-29")
    b = person_doc(first_surname="NÚÑEZ", given_names="PEDRO", birth_date="1980-02-29")
    c = person_doc(first_surname="NÚÑEZ", given_names="LUCÍA", birth_date="1981-03-01")
    for doc in (a, b, c):
        assert (await client.post(BASE, json=doc)).status_code == 201
    found = (
        await client.get(BASE, params={"first_surname": "nunez", "birth_date": "1980-02-29"})
    ).json()
    assert {p["curp"] for p in found["items"]} == {a["curp"], b["curp"]}
    narrowed = (
        await client.get(
            BASE,
            params={"first_surname": "Núñez", "given_names": "lucia", "birth_date": "1980-02-29"},
        )
    ).json()
    assert [p["curp"] for p in narrowed["items"]] == [a["curp"]]
    in_state = (
        await client.get(
            BASE,
            params={
                "first_surname": "NUNEZ",
                "birth_date": "1980-02-29",
                "state": "13",
                "limit": 1,
            },
        )
    ).json()
    assert len(in_state["items"]) == 1
    assert in_state["next_cursor"]
    rest = (
        await client.get(
            BASE,
            params={
                "first_surname": "NUNEZ",
                "birth_date": "1980-02-29",
                "state": "13",
                "limit": 1,
                "cursor": in_state["next_cursor"],
            },
        )
    ).json()
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    assert {in_state["items"][0]["curp"], rest["items"][0]["curp"]} == {a["curp"], b["curp"]}
    elsewhere = (
        await client.get(
            BASE, params={"first_surname": "NUNEZ", "birth_date": "1980-02-29", "state": "09"}
        )
    ).json()
    assert elsewhere["items"] == []
    by_curp = (await client.get(BASE, params={"curp": c["curp"]})).json()
    assert [p["curp"] for p in by_curp["items"]] == [c["curp"]]


async def test_search_cannot_list_everyone(client: httpx.AsyncClient) -> None:
    for params in ({}, {"state": "13"}, {"given_names": "LUCIA"}, {"first_surname": "NUNEZ"}):
        answer = await client.get(BASE, params=params)
        assert answer.status_code == 422, params
    # A cursor is this search's own: one past a 64-bit row id is refused, not a 500.
    for raw in ("p" + "9" * 40, "p9223372036854775808", "p²", "x1"):
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        answer = await client.get(BASE, params={"curp": person_doc()["curp"], "cursor": cursor})
        assert answer.status_code == 422, raw
        assert _fields(answer.json()) == {"cursor"}


async def test_a_clinician_finds_only_whom_they_have_a_basis_for(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """As a read: a search by CURP or by name shows a clinician only the persons they may
    read (care, consent, emergency), each recorded with that basis."""
    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    doctor = token_for(Role.CLINICIAN, institution=2, clues="HGIMS000010", username="dra.imss")
    by_name = {"first_surname": doc["first_surname"], "birth_date": doc["birth_date"]}
    twin = person_doc(first_surname=doc["first_surname"], birth_date=doc["birth_date"])
    assert (await client.post(BASE, json=twin)).status_code == 201
    for params in ({"curp": doc["curp"]}, by_name, {**by_name, "limit": 1}):
        answer = await client.get(BASE, params=params, headers=doctor)
        assert answer.status_code == 200, answer.text
        assert answer.json()["items"] == [], params
        # No cursor past persons they may not see (it said that some exist).
        assert answer.json()["next_cursor"] is None, params
    cared = await client.post(f"{BASE}/{doc['curp']}/care-relationships",
                              json={"kind": "encounter"}, headers=doctor)  # fmt: skip
    assert cared.status_code == 201, cared.text
    for params in ({"curp": doc["curp"]}, by_name):
        found = (await client.get(BASE, params=params, headers=doctor)).json()["items"]
        assert [p["curp"] for p in found] == [doc["curp"]], params
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    log = (await client.get(f"{BASE}/{doc['curp']}/accesses", headers=me)).json()["items"]
    mine = [e for e in log if e["actor"] == "dra.imss"]
    searches = [e["purpose"] for e in mine if e["action"] == "identity:person:search"]
    assert searches == ["care", "care"]


async def test_unknown_and_malformed_curp_on_read(client: httpx.AsyncClient) -> None:
    unknown = person_doc()["curp"]
    assert (await client.get(f"{BASE}/{unknown}")).status_code == 404
    malformed = await client.get(f"{BASE}/NOESUNACURP")
    assert malformed.status_code == 422
    assert _fields(malformed.json()) == {"curp"}


async def test_fast_read_route_serves_the_documented_model(client: httpx.AsyncClient) -> None:
    from salud.identity.schemas import PersonRead

    doc = person_doc()
    created = (await client.post(BASE, json=doc)).json()
    served = await client.get(f"{BASE}/{doc['curp']}")
    assert served.headers["content-type"] == "application/json"
    assert PersonRead.model_validate_json(served.content).model_dump() == (
        PersonRead.model_validate(created).model_dump()
    )
    spec = (await client.get("/api/v1/openapi.json")).json()
    schema = spec["paths"]["/api/v1/persons/{curp}"]["get"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"]["$ref"].endswith("/PersonRead")


async def test_identity_fields_may_be_left_to_the_curp(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    bare = {k: v for k, v in doc.items() if k not in {"birth_date", "sex", "birth_state"}}
    created = await client.post(BASE, json=bare)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["birth_date"], body["sex"], body["birth_state"]) == (
        doc["birth_date"],
        doc["sex"],
        "HG",
    )


async def test_names_must_be_the_curps(client: httpx.AsyncClient) -> None:
    """The CURP's first letters follow from the names: a CURP given another person's names,
    at registration or by a later change, is refused naming the field."""
    doc = person_doc(given_names="PEDRO", first_surname="LÓPEZ", second_surname="OCHOA")
    other = await client.post(BASE, json={**doc, "given_names": "JUANA", "first_surname": "PÉREZ"})
    assert other.status_code == 422, other.text
    assert _fields(other.json()) == {"curp"}
    assert "se esperaba" in other.json()["errors"][0]["reason"]
    assert (await client.get(f"{BASE}/{doc['curp']}")).status_code == 404

    assert (await client.post(BASE, json=doc)).status_code == 201
    renamed = await client.patch(
        f"{BASE}/{doc['curp']}", json={"first_surname": "GARCÍA"}, headers={"If-Match": 'W/"1"'}
    )
    assert renamed.status_code == 422, renamed.text
    assert _fields(renamed.json()) == {"first_surname"}
    assert (await client.get(f"{BASE}/{doc['curp']}")).json()["first_surname"] == "LÓPEZ"
    # A spelling the CURP cannot tell apart (the accent, a second given name) is a change.
    spelled = await client.patch(
        f"{BASE}/{doc['curp']}",
        json={"first_surname": "LOPEZ", "given_names": "PEDRO PABLO"},
        headers={"If-Match": 'W/"1"'},
    )
    assert spelled.status_code == 200, spelled.text
    assert spelled.json()["given_names"] == "PEDRO PABLO"
