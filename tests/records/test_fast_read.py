"""The read by id is served by a plain route ahead of the FastAPI router: it must answer as
the FastAPI route does, and leave every other /fhir address to the router."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TokenFor
from tests.records.test_fhir_api import (
    IMSS_UNIT,
    cared_for,
    clinician,
    condition,
    outcome,
    patient,
)

pytestmark = pytest.mark.db


async def test_the_fast_read_answers_like_the_router(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    first = app.router.routes[0:5]
    assert any(getattr(r, "path", "") == "/fhir/{kind:fhirtype}/{fhir_id:fhirid}" for r in first)
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    made = (await client.post("/fhir/Condition", json=condition(curp), headers=doctor)).json()
    read = await client.get(f"/fhir/Condition/{made['id']}", headers=doctor)
    assert read.status_code == 200
    assert read.headers["etag"] == 'W/"1"'
    assert read.headers["content-type"].startswith("application/fhir+json")
    assert read.json() == made
    # Errors are the same OperationOutcomes.
    refused = await client.get(f"/fhir/Condition/{made['id']}")  # the supervisor: no record:read
    assert refused.status_code == 403
    assert outcome(refused)["issue"][0]["code"] == "forbidden"
    missing = await client.get("/fhir/Condition/no-such-id", headers=doctor)
    assert missing.status_code == 404
    assert outcome(missing)["issue"][0]["code"] == "not-found"
    xml = await client.get(f"/fhir/Condition/{made['id']}?_format=xml", headers=doctor)
    assert xml.status_code == 406
    unknown = await client.get("/fhir/Nonsense/1", headers=doctor)
    assert unknown.status_code == 404
    # Not a read by id: history, the audit log, operations, the registry's Patient.
    history = await client.get("/fhir/Condition/_history", headers=doctor)
    assert "no existe" not in history.text, history.text  # the router answered, not the read
    assert (await client.get(f"/fhir/Patient/{curp}", headers=doctor)).json()["id"] == curp
    audit = await client.get("/fhir/AuditEvent/1", headers=doctor)  # the log's own route
    assert "no admitido" not in audit.text
