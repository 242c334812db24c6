"""“The nearest unit that serves me”: a person's entitlements decide which units count."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.facilities import service as facilities
from salud.facilities.gazetteer import Gazetteer
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db

PACHUCA = {"state": "13", "municipality": "048", "locality": "0001"}


@pytest.fixture
async def hidalgo_units(sessions: async_sessionmaker[AsyncSession], shared_data: Path) -> None:
    gazetteer = Gazetteer.load(shared_data / "inegi")
    clues = shared_data / "clues"
    for name in (
        "ESTABLECIMIENTO_SALUD_202501_hidalgo_imb_sample.csv",
        "clues_other_institutions_7states.csv",
    ):
        await facilities.import_file(sessions, clues / name, gazetteer=gazetteer)


def _codes(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {u["institution_code"] for u in answer.json()["items"]}


async def test_imss_affiliate_gets_imss_and_open_units_near_home(
    client: httpx.AsyncClient, hidalgo_units: None
) -> None:
    doc = person_doc(address=PACHUCA)  # the factory's affiliation is IMSS (code 2)
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    answer = await client.get(f"/api/v1/persons/{doc['curp']}/nearest-units", params={"k": 20})
    codes = _codes(answer)
    assert "IMS" in codes
    assert codes <= {"IMS", "IMB", "SSA", "IMO"}
    distances = [u["distance_km"] for u in answer.json()["items"]]
    assert distances == sorted(distances)
    assert distances[0] < 15  # Pachuca has units within a few km


async def test_ended_affiliation_does_not_entitle(
    client: httpx.AsyncClient, hidalgo_units: None
) -> None:
    doc = person_doc(
        address=PACHUCA,
        affiliations=[
            {"institution_code": 2, "valid_from": "2001-01-01", "valid_to": "2010-12-31"},
            {"institution_code": 3, "valid_from": "2020-01-01", "status": "suspended"},
        ],
    )
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    codes = _codes(
        await client.get(f"/api/v1/persons/{doc['curp']}/nearest-units", params={"k": 20})
    )
    assert codes
    assert codes <= {"IMB", "SSA", "IMO"}


async def test_point_must_be_whole_and_address_known(
    client: httpx.AsyncClient, hidalgo_units: None
) -> None:
    doc = person_doc(address={"state": "13"})
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    url = f"/api/v1/persons/{doc['curp']}/nearest-units"
    half = await client.get(url, params={"lat": 20.1})
    assert half.status_code == 422
    assert half.json()["errors"][0]["field"] == "lng"
    no_home = await client.get(url)
    assert no_home.status_code == 422
    assert no_home.json()["errors"][0]["field"] == "lat"
    from_point = await client.get(url, params={"lat": 20.12, "lng": -98.73, "k": 3})
    assert len(from_point.json()["items"]) == 3
