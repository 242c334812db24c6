"""The audit log as FHIR AuditEvent: auditors see it all, a person sees their own."""

from __future__ import annotations

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class

from salud.access.permissions import Role
from tests.conftest import TokenFor
from tests.records.test_fhir_api import IMSS_UNIT, cared_for, clinician, condition, outcome, patient

pytestmark = pytest.mark.db


async def test_auditors_and_the_person_read_the_log_as_audit_events(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp, other = await patient(client), await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    created = await client.post("/fhir/Condition", json=condition(curp), headers=doctor)
    assert created.status_code == 201
    await client.get(f"/fhir/Condition?patient={curp}", headers=doctor)

    auditor = token_for(Role.AUDITOR)
    page = await client.get(f"/fhir/AuditEvent?patient={curp}&_count=2", headers=auditor)
    assert page.status_code == 200, page.text
    bundle = page.json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    events = [e["resource"] for e in bundle["entry"]]
    assert len(events) == 2
    for event in events:
        get_fhir_model_class("AuditEvent").model_validate(event)
    newest = events[0]
    assert newest["subtype"][0]["code"] == "records:Condition:search"
    assert newest["action"] == "R"
    assert newest["agent"][0]["who"]["identifier"]["value"] == "medica.imss"
    assert newest["agent"][1]["who"]["identifier"]["value"] == IMSS_UNIT
    assert newest["entity"][0]["what"]["reference"] == f"Patient/{curp}"
    nxt = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert events[1]["subtype"][0]["code"] == "records:Condition:create"
    assert events[1]["action"] == "C"
    older = (await client.get(nxt.replace("http://test", ""), headers=auditor)).json()
    assert older["entry"][0]["resource"]["subtype"][0]["code"] == "access:care:record"
    one = await client.get(f"/fhir/AuditEvent/{newest['id']}", headers=auditor)
    assert one.json() == newest

    me = token_for(Role.CITIZEN, curp=curp)
    mine = await client.get(f"/fhir/AuditEvent?patient={curp}", headers=me)
    assert mine.status_code == 200
    assert all(e["resource"]["entity"][0]["what"]["reference"] == f"Patient/{curp}"
               for e in mine.json()["entry"])  # fmt: skip
    theirs = await client.get(f"/fhir/AuditEvent?patient={other}", headers=me)
    assert theirs.status_code == 403
    everything = await client.get("/fhir/AuditEvent", headers=me)
    assert everything.status_code == 403
    assert (await client.get("/fhir/AuditEvent", headers=doctor)).status_code == 403
    odd = await client.get("/fhir/AuditEvent?date=2026", headers=auditor)
    assert odd.status_code == 400
    assert "date" in outcome(odd)["issue"][0]["diagnostics"]
    write = await client.post(
        "/fhir/AuditEvent", json={"resourceType": "AuditEvent"}, headers=auditor
    )
    assert write.status_code == 405


async def test_patient_and_agent_together_page_through_every_entry_of_that_agent(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """The agent was filtered after fetching a page of the person's entries: an agent's older
    entries behind other agents' newer ones never came, and no next link said so."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    for _ in range(3):
        await client.get(f"/fhir/Condition?patient={curp}", headers=doctor)
    for _ in range(4):  # newer entries by another agent
        await client.get(f"/api/v1/persons/{curp}")
    auditor = token_for(Role.AUDITOR)
    seen: list[str] = []
    url: str | None = f"/fhir/AuditEvent?patient={curp}&agent=medica.imss&_count=2"
    while url:
        bundle = (await client.get(url, headers=auditor)).json()
        seen += [e["resource"]["subtype"][0]["code"] for e in bundle["entry"]]
        url = next((link["url"].replace("http://test", "") for link in bundle["link"]
                    if link["relation"] == "next"), None)  # fmt: skip
    assert seen.count("records:Condition:search") == 3
    assert all(code != "identity:person:read" for code in seen)
