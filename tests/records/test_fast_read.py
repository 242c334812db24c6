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
    # The router's vread of the same version answers the same resource and ETag.
    routed = await client.get(f"/fhir/Condition/{made['id']}/_history/1", headers=doctor)
    assert (routed.json(), routed.headers["etag"]) == (read.json(), read.headers["etag"])
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
    assert "no existe Condition/_history" not in history.text, history.text  # the router's
    # Digits int() refuses ("²" is a digit to str.isdigit) are a 400 or 404, never a 500.
    for url in (
        f"/fhir/Condition?patient={curp}&_count=%C2%B2",
        "/fhir/Condition/_history?_count=%C2%B2",
        f"/fhir/Patient/{curp}/$everything?_count=%C2%B2",
        "/fhir/AuditEvent?_count=%C2%B2",
    ):
        assert (await client.get(url, headers=doctor)).status_code == 400, url
    odd = await client.get(f"/fhir/Condition/{made['id']}/_history/%C2%B2", headers=doctor)
    assert odd.status_code == 404
    superscript = {**doctor, "If-Match": 'W/"\xb2"'.encode("latin-1")}
    stale = await client.put(f"/fhir/Condition/{made['id']}", json=made, headers=superscript)
    assert stale.status_code == 400
    assert (await client.get(f"/fhir/Patient/{curp}", headers=doctor)).json()["id"] == curp
    audit = await client.get("/fhir/AuditEvent/1", headers=doctor)  # the log's own route
    assert "no admitido" not in audit.text
