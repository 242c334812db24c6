"""Every answer that tells something about a person is on that person's log: a refused
registration says the CURP exists, a photo refused for an unregistered CURP says it does
not, and a list of a minor's links names each guardian."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.identity.synth import synthetic_face
from salud.kit.clock import today_mx
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db

BASE = "/api/v1/persons"


async def _log(
    sessions: async_sessionmaker[AsyncSession], curp: str
) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    stmt = (
        select(AuditEvent.actor, AuditEvent.action, AuditEvent.outcome, AuditEvent.detail)
        .where(AuditEvent.person_curp == curp)
        .order_by(AuditEvent.seq)
    )
    async with sessions() as session:
        return [(r[0], r[1], r[2], r[3]) for r in (await session.execute(stmt)).all()]


async def test_a_write_only_client_probing_a_curp_is_recorded(
    anonymous: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    doc = person_doc()
    staff = token_for(Role.SUPERVISOR)
    assert (await anonymous.post(BASE, json=doc, headers=staff)).status_code == 201
    writer = token_for(Role.CLIENT, scopes="system/Patient.write", username="his-sonda")
    probe = await anonymous.post(BASE, json=doc, headers=writer)
    assert probe.status_code == 409, probe.text
    refused = (
        "his-sonda",
        "identity:person:create",
        "denied",
        {"conflict": "curp already registered"},
    )
    assert refused in await _log(sessions, doc["curp"])

    nobody = person_doc()["curp"]  # never registered
    photo = await anonymous.put(
        f"{BASE}/{nobody}/photo", content=synthetic_face(3), headers={
            **writer, "Content-Type": "image/jpeg"},
    )  # fmt: skip
    assert photo.status_code == 404, photo.text
    assert await _log(sessions, nobody) == [
        ("his-sonda", "identity:photo:update", "not_found", None)
    ]
    # A change of no one is recorded as a read of no one is.
    patched = await anonymous.patch(
        f"{BASE}/{nobody}", json={"phone": "+527711234567"},
        headers={**staff, "If-Match": 'W/"1"'},
    )  # fmt: skip
    assert patched.status_code == 404
    assert ("supervisor.prueba", "identity:person:update", "not_found", None) in await _log(
        sessions, nobody
    )


async def test_every_refused_concurrent_registration_is_recorded(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The 409 of a registration that lost the race at the unique index (not only the one its
    own look-up caught) is on the log, and the winner's entry too."""
    doc = person_doc()
    answers = await asyncio.gather(*(client.post(BASE, json=doc) for _ in range(4)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409, 409], [a.text for a in answers]
    outcomes = sorted(o for _, a, o, _ in await _log(sessions, doc["curp"]) if a.endswith("create"))
    assert outcomes == ["denied", "denied", "denied", "success"]


async def test_a_list_of_guardians_is_on_each_guardians_log(
    client: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    mother, father = person_doc(birth_date="1990-02-03"), person_doc(birth_date="1988-05-06")
    child = person_doc(birth_date=(today_mx() - timedelta(days=5 * 365)).isoformat())
    for doc in (mother, father, child):
        assert (await client.post(BASE, json=doc)).status_code == 201
    url = f"{BASE}/{child['curp']}/guardians"
    for parent, relationship in ((mother, "mother"), (father, "father")):
        body = {"guardian_curp": parent["curp"], "relationship": relationship,
                "reason": "acta de nacimiento"}  # fmt: skip
        assert (await client.post(url, json=body)).status_code == 201
    reader = token_for(Role.REGISTRATION_OPERATOR, username="operadora.lee")
    listed = await client.get(url, headers=reader)
    assert listed.status_code == 200, listed.text
    assert {g["guardian_curp"] for g in listed.json()} == {mother["curp"], father["curp"]}
    for parent in (mother, father):
        seen = [(w, a) for w, a, o, _ in await _log(sessions, parent["curp"]) if o == "success"]
        assert ("operadora.lee", "identity:guardian:list") in seen
        # The answer to linking lists the links too: the staff who linked are there as well.
        assert ("supervisor.prueba", "identity:guardian:list") in seen
