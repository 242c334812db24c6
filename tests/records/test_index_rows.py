"""The search-index tables have no foreign key (records/models.py): the repository alone
keeps them whole. Every index row belongs to a stored resource, whatever the writes were, and
a transaction's POSTs, written together, are indexed and audited one by one."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import TokenFor
from tests.records.test_bundles import visit
from tests.records.test_fhir_api import IMSS_UNIT, cared_for, clinician, condition, patient

pytestmark = pytest.mark.db

TABLES = ("fhir_tokens", "fhir_references", "fhir_dates")


async def _orphans(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        return {
            table: (
                await session.execute(
                    text(
                        f"SELECT count(*) FROM {table} t WHERE NOT EXISTS "
                        "(SELECT 1 FROM fhir_resources r WHERE r.id = t.resource_pk)"
                    )
                )
            ).scalar_one()
            for table in TABLES
        }


async def _rows_of(sessions: async_sessionmaker[AsyncSession], kind: str, fhir_id: str) -> int:
    async with sessions() as session:
        total = 0
        for table in TABLES:
            total += (
                await session.execute(
                    text(
                        f"SELECT count(*) FROM {table} t JOIN fhir_resources r "
                        "ON r.id = t.resource_pk WHERE r.resource_type = :k AND r.fhir_id = :i"
                    ),
                    {"k": kind, "i": fhir_id},
                )
            ).scalar_one()
        return int(total)


async def test_index_rows_always_belong_to_a_resource(
    client: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.index")
    await cared_for(client, curp, doctor)
    answer = await client.post("/fhir", json=visit(curp), headers=doctor)
    assert answer.status_code == 200, answer.text
    locations = [e["response"]["location"].split("/")[:2] for e in answer.json()["entry"]]
    for kind, fhir_id in locations:  # each POST of the batch write has its own index rows
        assert await _rows_of(sessions, kind, fhir_id) >= 2, (kind, fhir_id)

    # Each POST audited on its own, naming its resource, in the transaction that wrote it.
    async with sessions() as session:
        created = set(
            (
                await session.execute(
                    text(
                        "SELECT subject_id FROM audit_events WHERE person_curp = :c "
                        "AND action LIKE :a"
                    ),
                    {"c": curp, "a": "records:%:create"},
                )
            ).scalars()
        )
    assert created == {f"{k}/{i}" for k, i in locations}

    # An update replaces the rows, a delete keeps the (deleted) row, a failed transaction
    # leaves nothing: no index row is ever left without its resource.
    kind, fhir_id = locations[0]
    current = (await client.get(f"/fhir/{kind}/{fhir_id}", headers=doctor)).json()
    current["code"] = condition(curp, "I10")["code"]
    assert (await client.put(f"/fhir/{kind}/{fhir_id}", json=current,
                             headers=doctor)).status_code == 200  # fmt: skip
    found = await client.get(f"/fhir/Condition?patient={curp}&code=I10", headers=doctor)
    assert found.json()["total"] == 1
    gone = await client.get(f"/fhir/Condition?patient={curp}&code=E11.9", headers=doctor)
    assert gone.json()["total"] == 0
    assert (await client.delete(f"/fhir/{kind}/{fhir_id}", headers=doctor)).status_code in (
        200,
        204,
    )
    broken = visit(curp, "urn:uuid:44444444-4444-4444-4444-444444444444")
    broken["entry"][2]["resource"]["valueQuantity"]["value"] = "mucho"  # the last POST fails
    assert (await client.post("/fhir", json=broken, headers=doctor)).status_code == 400
    assert await _orphans(sessions) == dict.fromkeys(TABLES, 0)
