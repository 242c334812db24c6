"""The REST views of the log say what was read or changed: the subject and the detail the
service recorded (the auditors see it all; the person, what is about themselves, never
another person's identity)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from salud.access.permissions import Role
from salud.kit.clock import today_mx
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


def _entries(page: httpx.Response, action: str) -> list[dict[str, Any]]:
    assert page.status_code == 200, page.text
    return [e for e in page.json()["items"] if e["action"] == action]


async def test_auditors_see_what_was_changed_and_the_person_too(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = person_doc()
    curp = doc["curp"]
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    changed = await client.patch(f"/api/v1/persons/{curp}", json={"phone": "+527711234567"},
                                 headers={"If-Match": 'W/"1"'})  # fmt: skip
    assert changed.status_code == 200
    auditor = token_for(Role.AUDITOR)
    everyone = await anonymous.get(
        "/api/v1/audit/events", params={"action": "identity:person:update"}, headers=auditor
    )
    [update] = [e for e in _entries(everyone, "identity:person:update") if e["person_curp"] == curp]
    assert (update["subject_type"], update["detail"]) == (
        "person", {"version": 2, "fields": ["phone"]}
    )  # fmt: skip
    theirs = await anonymous.get(f"/api/v1/persons/{curp}/accesses", headers=auditor)
    assert _entries(theirs, "identity:person:update")[0]["detail"]["fields"] == ["phone"]
    me = token_for(Role.CITIZEN, curp=curp)
    mine = await anonymous.get(f"/api/v1/persons/{curp}/accesses", headers=me)
    assert _entries(mine, "identity:person:update")[0]["detail"] == {
        "version": 2, "fields": ["phone"]
    }  # fmt: skip
    filed = await anonymous.post(
        f"/api/v1/persons/{curp}/data-requests", headers=me,
        json={"kind": "access", "description": "Quiero una copia de mis datos"},
    )  # fmt: skip
    assert filed.status_code == 201, filed.text
    mine = await anonymous.get(f"/api/v1/persons/{curp}/accesses", headers=me)
    [filing] = _entries(mine, "identity:data-request:file")
    assert (filing["subject_type"], filing["subject_id"]) == ("data_request", filed.json()["folio"])
    # A refusal says which permission was missing (an internal name, about this record).
    verifier = token_for(Role.VERIFIER, username="recepcion.y")
    assert (
        await anonymous.get(f"/api/v1/persons/{curp}/history", headers=verifier)
    ).status_code == 403
    mine = await anonymous.get(f"/api/v1/persons/{curp}/accesses", headers=me)
    [refused] = _entries(mine, "identity:person:history")
    assert refused["detail"] == {"permission": "person:history"}


async def test_a_person_does_not_see_another_persons_identity_in_the_detail(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    parent = person_doc(birth_date="1990-02-03")
    child = person_doc(birth_date=(today_mx() - timedelta(days=10 * 365)).isoformat())
    for doc in (parent, child):
        assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    linked = await client.post(
        f"/api/v1/persons/{child['curp']}/guardians",
        json={"guardian_curp": parent["curp"], "relationship": "mother",
              "reason": "acta de nacimiento"},
    )  # fmt: skip
    assert linked.status_code == 201, linked.text
    url = f"/api/v1/persons/{child['curp']}/accesses"
    seen_by_auditor = await anonymous.get(url, headers=token_for(Role.AUDITOR))
    [link] = _entries(seen_by_auditor, "identity:guardian:link")
    assert link["detail"]["guardian"] == parent["curp"]
    seen_by_child = await anonymous.get(url, headers=token_for(Role.CITIZEN, curp=child["curp"]))
    [link] = _entries(seen_by_child, "identity:guardian:link")
    assert link["detail"] == {"relationship": "mother", "source": "acta de nacimiento"}
    assert parent["curp"] not in seen_by_child.text
