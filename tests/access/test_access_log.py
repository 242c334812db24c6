"""Every read of a person is recorded; the person sees who looked at their data."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit_chain import verify
from salud.access.permissions import Role
from salud.config import Settings
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


async def test_who_looked_at_my_data(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    doc = person_doc()
    curp = doc["curp"]
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    nurse = token_for(Role.VERIFIER, username="recepcion.issste")
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=nurse)).status_code == 200
    denied = await anonymous.get(
        f"/api/v1/persons/{curp}/history", headers=token_for(Role.VERIFIER)
    )
    assert denied.status_code == 403

    me = token_for(Role.CITIZEN, curp=curp)
    log = (await anonymous.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()
    seen = [(e["actor"], e["action"], e["outcome"]) for e in log["items"]]
    assert ("recepcion.issste", "identity:person:read", "success") in seen
    assert ("verifier.prueba", "identity:person:history", "denied") in seen
    assert ("supervisor.prueba", "identity:person:create", "success") in seen

    someone_else = token_for(Role.CITIZEN, curp=person_doc()["curp"])
    blocked = await anonymous.get(f"/api/v1/persons/{curp}/accesses", headers=someone_else)
    assert blocked.status_code == 403

    auditor = token_for(Role.AUDITOR)
    events = (await anonymous.get("/api/v1/audit/events", headers=auditor)).json()["items"]
    assert any(e["person_curp"] == curp for e in events)
    result = await verify(sessions, settings.audit_key.get_secret_value().encode())
    assert result.ok, result.problem


async def test_a_stated_purpose_is_recorded_and_checked(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = person_doc()
    curp = doc["curp"]
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    # In the caller's words: the purposes the system records itself are refused
    # (tests/access/test_declared_purpose.py).
    reception = {**token_for(Role.VERIFIER), "X-Salud-Purpose": "control de acceso"}
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=reception)).status_code == 200
    too_long = {**token_for(Role.VERIFIER), "X-Salud-Purpose": "x" * 61}
    refused = await anonymous.get(f"/api/v1/persons/{curp}", headers=too_long)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "X-Salud-Purpose"
    log = (
        await anonymous.get(
            f"/api/v1/persons/{curp}/accesses", headers=token_for(Role.CITIZEN, curp=curp)
        )
    ).json()["items"]
    assert any(e["purpose"] == "control de acceso" for e in log)


async def test_another_citizens_attempt_is_shown_without_their_curp(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A citizen signs in as `ciudadano:{CURP}`: their refused attempt on someone else's
    record named them by CURP in that person's view (another person's identity). The person
    sees that someone tried; the auditors see who."""
    doc, other = person_doc(), person_doc()
    for person in (doc, other):
        assert (await client.post("/api/v1/persons", json=person)).status_code == 201
    snoop = token_for(Role.CITIZEN, curp=other["curp"], username=f"ciudadano:{other['curp']}")
    tried = await anonymous.get(f"/api/v1/persons/{doc['curp']}", headers=snoop)
    assert tried.status_code == 403
    me = token_for(Role.CITIZEN, curp=doc["curp"], username=f"ciudadano:{doc['curp']}")
    mine = await anonymous.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=me)
    assert other["curp"] not in mine.text
    actors = {(e["actor"], e["outcome"]) for e in mine.json()["items"]}
    assert ("otra persona (ciudadano)", "denied") in actors
    # The same log as FHIR AuditEvents (searched, by POST too, and read): the same rule, and
    # no filtering one's log by a name (it would tell whether that person tried).
    fhir_log = await anonymous.get(f"/fhir/AuditEvent?patient=Patient/{doc['curp']}", headers=me)
    assert fhir_log.status_code == 200, fhir_log.text
    assert other["curp"] not in fhir_log.text
    assert "otra persona (ciudadano)" in fhir_log.text
    posted = await anonymous.post(
        "/fhir/AuditEvent/_search", content=f"patient=Patient/{doc['curp']}",
        headers={**me, "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert posted.status_code == 200, posted.text
    assert posted.json()["entry"][1:] == fhir_log.json()["entry"]  # and the GET itself
    seq = next(e["resource"]["id"] for e in fhir_log.json()["entry"]
               if "otra persona" in e["resource"]["agent"][0]["who"]["display"])  # fmt: skip
    one = await anonymous.get(f"/fhir/AuditEvent/{seq}", headers=me)
    assert other["curp"] not in one.text
    by_name = await anonymous.get(
        f"/fhir/AuditEvent?patient=Patient/{doc['curp']}&agent=ciudadano:{other['curp']}",
        headers=me,
    )  # fmt: skip
    assert by_name.status_code == 400
    auditor = token_for(Role.AUDITOR)
    full = await anonymous.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=auditor)
    assert f"ciudadano:{other['curp']}" in full.text
    seen = await anonymous.get(f"/fhir/AuditEvent/{seq}", headers=auditor)
    assert f"ciudadano:{other['curp']}" in seen.text
    # A key no one's record can have is named, not refused by the log's own column check.
    long = "A" * 300
    named = await anonymous.get(f"/api/v1/persons/{long}/accesses", headers=auditor)
    assert named.status_code == 422
    assert named.json()["errors"][0]["field"] == "curp"
    fhir = await anonymous.get(f"/fhir/AuditEvent?patient=Patient/{long}", headers=auditor)
    assert fhir.status_code == 400
    assert fhir.json()["issue"][0]["expression"] == ["patient"]


async def test_an_auditor_browsing_the_whole_log_is_in_each_named_persons_log(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """The whole log's pages name persons and what was done with their data: the browse was
    one entry with no person, so no one saw that their entries were read."""
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    auditor = token_for(Role.AUDITOR, username="auditora.general")
    for url in ("/api/v1/audit/events", "/fhir/AuditEvent"):
        browsed = await anonymous.get(url, headers=auditor)
        assert browsed.status_code == 200, browsed.text
        assert doc["curp"] in browsed.text
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    log = (await anonymous.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=me)).json()
    seen = {(e["actor"], e["action"]) for e in log["items"]}
    assert ("auditora.general", "access:audit:read") in seen
    assert ("auditora.general", "records:AuditEvent:search") in seen
