"""Derechos ARCO: a person files, the privacy office answers; rectification is a new version."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from salud.access.permissions import Role
from salud.kit.clock import today_mx
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


async def _person(client: httpx.AsyncClient) -> dict[str, object]:
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    return doc


async def test_rectification_granted_creates_a_new_version(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await _person(client)
    curp = str(doc["curp"])
    me = token_for(Role.CITIZEN, curp=curp)
    filed = await anonymous.post(
        f"/api/v1/persons/{curp}/data-requests",
        headers=me,
        json={
            "kind": "rectification",
            "description": "Mi grupo sanguíneo es A+, no O+",
            "requested_changes": {"blood_type": "A+"},
        },
    )
    assert filed.status_code == 201, filed.text
    request = filed.json()
    assert request["folio"].startswith("ARCO-")
    assert request["status"] == "received"
    assert request["due_on"] > request["filed_at"][:10]

    office = token_for(Role.INSTITUTION_ADMIN)
    pending = await anonymous.get("/api/v1/data-requests", headers=office)
    assert [r["folio"] for r in pending.json()] == [request["folio"]]
    answered = await anonymous.post(
        f"/api/v1/data-requests/{request['folio']}/answer",
        headers=office,
        json={"decision": "granted", "answer": "Se corrigió con el resultado de laboratorio"},
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["resulting_version"] == 2

    person = (await anonymous.get(f"/api/v1/persons/{curp}", headers=me)).json()
    assert person["blood_type"] == "A+"
    assert person["version"] == 2
    history = (await client.get(f"/api/v1/persons/{curp}/history")).json()
    assert history[1]["reason"] == f"rectificación {request['folio']}"
    assert history[1]["changes"] == [{"field": "blood_type", "old": "O+", "new": "A+"}]

    again = await anonymous.post(
        f"/api/v1/data-requests/{request['folio']}/answer",
        headers=office,
        json={"decision": "denied", "answer": "segunda respuesta"},
    )
    assert again.status_code == 409
    # The office keeps tracking it once answered (the list showed pending ones only, 500 at
    # most): by state, paged, and by folio.
    pending_now = await anonymous.get("/api/v1/data-requests", headers=office)
    assert pending_now.json() == []
    granted = await anonymous.get("/api/v1/data-requests?status=granted", headers=office)
    assert [r["folio"] for r in granted.json()] == [request["folio"]]
    everything = await anonymous.get("/api/v1/data-requests?status=all&offset=1", headers=office)
    assert everything.json() == []
    one = await anonymous.get(f"/api/v1/data-requests/{request['folio']}", headers=office)
    assert one.json()["status"] == "granted"
    assert one.json()["resulting_version"] == 2
    missing = await anonymous.get("/api/v1/data-requests/ARCO-2026-9999999", headers=office)
    assert missing.status_code == 404
    bad = await anonymous.get("/api/v1/data-requests?status=cerrada", headers=office)
    assert bad.status_code == 422
    assert (await anonymous.get(f"/api/v1/data-requests/{request['folio']}",
                                headers=me)).status_code == 403  # fmt: skip


async def test_requests_are_validated_and_only_for_oneself(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    mine, theirs = await _person(client), await _person(client)
    me = token_for(Role.CITIZEN, curp=str(mine["curp"]))
    url = f"/api/v1/persons/{mine['curp']}/data-requests"
    no_changes = await anonymous.post(
        url, headers=me, json={"kind": "rectification", "description": "corrijan algo"}
    )
    assert no_changes.status_code == 422
    assert no_changes.json()["errors"][0]["field"] == "requested_changes"
    other = await anonymous.post(
        f"/api/v1/persons/{theirs['curp']}/data-requests",
        headers=me,
        json={"kind": "access", "description": "quiero sus datos"},
    )
    assert other.status_code == 403
    ok = await anonymous.post(
        url, headers=me, json={"kind": "opposition", "description": "no al uso estadístico"}
    )
    assert ok.status_code == 201
    listed = await anonymous.get(url, headers=me)
    assert [r["kind"] for r in listed.json()] == ["opposition"]
    assert not listed.json()[0]["overdue"]


async def test_two_answers_at_once_one_wins_and_the_other_is_told(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Two officers answering the same request at the same moment: one answer is applied,
    the other is a 409, never a 200 for an answer that was overwritten (on SQLite too)."""
    doc = await _person(client)
    curp = str(doc["curp"])
    me = token_for(Role.CITIZEN, curp=curp)
    filed = await anonymous.post(
        f"/api/v1/persons/{curp}/data-requests", headers=me,
        json={"kind": "rectification", "description": "Mi grupo sanguíneo es A+, no O+",
              "requested_changes": {"blood_type": "A+"}},
    )  # fmt: skip
    folio = filed.json()["folio"]
    assert folio.startswith(f"ARCO-{today_mx().year}-")
    office = token_for(Role.INSTITUTION_ADMIN)
    url = f"/api/v1/data-requests/{folio}/answer"
    answers = await asyncio.gather(
        anonymous.post(url, headers=office, json={"decision": "granted", "answer": "Procede"}),
        anonymous.post(url, headers=office, json={"decision": "denied", "answer": "No procede"}),
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    winner = next(a.json() for a in answers if a.status_code == 200)
    mine = (await anonymous.get(f"/api/v1/persons/{curp}/data-requests", headers=me)).json()
    assert mine[0]["status"] == winner["status"]
    person = (await anonymous.get(f"/api/v1/persons/{curp}", headers=me)).json()
    assert person["version"] == (2 if winner["status"] == "granted" else 1)
