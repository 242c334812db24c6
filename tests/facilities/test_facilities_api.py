"""The catalog over HTTP: nearest units, a unit, its history, search and the errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.facilities import service
from salud.facilities.gazetteer import Gazetteer
from salud.kit.geo import haversine_km
from tests.conftest import TokenFor
from tests.facilities.helpers import SAMPLE, read_rows, write_csv
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db

BASE = "/api/v1/facilities"
ACATLAN = (20.1447, -98.4400)


@pytest.fixture
async def catalog(
    sessions: async_sessionmaker[AsyncSession], clues_dir: Path, gazetteer: Gazetteer
) -> tuple[list[str], list[list[str]]]:
    await service.import_file(sessions, clues_dir / SAMPLE, gazetteer=gazetteer)
    return read_rows(clues_dir / SAMPLE)


def _fields(problem: dict[str, object]) -> set[str]:
    errors = problem.get("errors")
    assert isinstance(errors, list)
    return {e["field"] for e in errors}


async def test_nearest_matches_a_scan_of_the_sample(
    client: httpx.AsyncClient, catalog: tuple[list[str], list[list[str]]]
) -> None:
    answer = await client.get(
        f"{BASE}/nearest",
        params={"lat": ACATLAN[0], "lng": ACATLAN[1], "k": 7, "institution": "IMB"},
    )
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    header, rows = catalog
    lat_col, lng_col = header.index("LATITUD"), header.index("LONGITUD")
    expected = sorted(
        (haversine_km(*ACATLAN, float(r[lat_col]), float(r[lng_col])), r[0]) for r in rows
    )[:7]
    assert [i["clues"] for i in items] == [clues for _, clues in expected]
    assert [i["distance_km"] for i in items] == [round(km, 2) for km, _ in expected]
    first = items[0]
    assert first["clues"] == "HGIMB000011"
    assert first["institution_code"] == "IMB"
    assert first["location_precision"] == "exact"
    assert first["open_now"] is None


async def test_nearest_filters(
    client: httpx.AsyncClient, catalog: tuple[list[str], list[list[str]]]
) -> None:
    params: dict[str, str | float | int] = {"lat": ACATLAN[0], "lng": ACATLAN[1]}
    none = await client.get(f"{BASE}/nearest", params={**params, "institution": "IMS"})
    assert none.status_code == 200
    assert none.json()["items"] == []
    near = await client.get(f"{BASE}/nearest", params={**params, "k": 50, "max_km": 10})
    assert all(i["distance_km"] <= 10 for i in near.json()["items"])
    level2 = await client.get(f"{BASE}/nearest", params={**params, "level": 2})
    assert level2.json()["items"] == []  # the sample is all first level
    closed = await client.get(f"{BASE}/nearest", params={**params, "open_now": "true"})
    assert closed.json()["items"] == []  # the sample has no hours


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lat": 100, "lng": -98.4}, "lat"),
        ({"lat": 20.1, "lng": -200}, "lng"),
        ({"lat": 20.1, "lng": -98.4, "k": 51}, "k"),
        ({"lat": 20.1, "lng": -98.4, "k": 0}, "k"),
        ({"lat": 20.1, "lng": -98.4, "level": 4}, "level"),
        ({"lat": 20.1, "lng": -98.4, "max_km": -1}, "max_km"),
        ({"lat": 20.1, "lng": -98.4, "institution": "IMSS"}, "institution"),
        # Three letters that no institution of the catalog has: named, not an empty list.
        ({"lat": 20.1, "lng": -98.4, "institution": "XYZ"}, "institution"),
        ({"lat": "norte", "lng": -98.4}, "lat"),
        ({"lng": -98.4}, "lat"),
    ],
)
async def test_nearest_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, object], field: str
) -> None:
    answer = await client.get(f"{BASE}/nearest", params=params)  # type: ignore[arg-type]
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert _fields(answer.json()) == {field}


async def test_unit_history_and_errors(
    client: httpx.AsyncClient,
    catalog: tuple[list[str], list[list[str]]],
    sessions: async_sessionmaker[AsyncSession],
    clues_dir: Path,
    gazetteer: Gazetteer,
    tmp_path: Path,
) -> None:
    unit = await client.get(f"{BASE}/HGIMB000011")
    assert unit.status_code == 200
    assert unit.json()["name"] == "ACATLÁN"
    assert unit.json()["version"] == 1

    header, rows = read_rows(clues_dir / SAMPLE)
    rows[0][header.index("ESTATUS DE OPERACION")] = "FUERA DE OPERACION"
    await service.import_file(
        sessions, write_csv(tmp_path / SAMPLE, header, rows), gazetteer=gazetteer
    )
    history = await client.get(f"{BASE}/HGIMB000011/history")
    assert history.status_code == 200
    body = history.json()
    assert body["current"]["version"] == 2
    assert body["current"]["in_operation"] is False
    assert [(v["version"], v["values"]["status"]) for v in body["versions"]] == [
        (1, "EN OPERACION")
    ]

    missing = await client.get(f"{BASE}/HGIMB999999")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"{BASE}/HGIMB999999/history")).status_code == 404
    bad = await client.get(f"{BASE}/HGIMB0000XX")
    assert bad.status_code == 422
    assert _fields(bad.json()) == {"clues"}


async def test_search(
    client: httpx.AsyncClient, catalog: tuple[list[str], list[list[str]]]
) -> None:
    page = await client.get(BASE, params={"name": "acatlán", "state": "HG", "limit": 3})
    assert page.status_code == 200
    body = page.json()
    assert body["total"] >= 1
    assert body["items"][0]["clues"] == "HGIMB000011"
    assert body["limit"] == 3
    assert body["offset"] == 0
    empty = await client.get(BASE, params={"state": "DF"})
    assert empty.json()["total"] == 0
    too_many = await client.get(BASE, params={"limit": 5000})
    assert too_many.status_code == 422
    assert _fields(too_many.json()) == {"limit"}
    unknown = await client.get(BASE, params={"institution": "XYZ"})
    assert unknown.status_code == 422
    assert _fields(unknown.json()) == {"institution"}
    known = await client.get(BASE, params={"institution": "ssa"})  # no unit here, but real
    assert known.status_code == 200


@pytest.mark.parametrize("imb_first", [False, True])
async def test_a_unit_that_passed_to_imss_bienestar_is_listed_once(
    imb_first: bool,
    client: httpx.AsyncClient,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
    clues_dir: Path,
    gazetteer: Gazetteer,
    tmp_path: Path,
) -> None:
    """Hospital General Xoco was SSA's DFSSA003162 and is IMSS-Bienestar's DFIMB001822 (the
    IMSS-Bienestar file names the old key in `clues_ssa_y_sme`). With both files imported,
    "nearest" and the search list it once, under its current key; the old key still reads
    and says which unit it became. Either file may come first."""
    files = []
    for name, key, column in (
        ("clues_other_institutions_7states.csv", "DFSSA003162", "clues"),
        ("clues_imss_bienestar_202606.csv", "DFIMB001822", "clues_imb"),
    ):
        header, rows = read_rows(clues_dir / name)
        at = header.index(column)
        picked = [r for r in rows if r[at] == key]
        assert len(picked) == 1
        files.append(write_csv(tmp_path / name, header, picked))
    for path in reversed(files) if imb_first else files:
        await service.import_file(sessions, path, gazetteer=gazetteer)
    xoco = {"lat": 19.3601, "lng": -99.1625}
    near = await client.get(f"{BASE}/nearest", params={**xoco, "k": 5})
    assert near.status_code == 200, near.text
    assert [u["clues"] for u in near.json()["items"]] == ["DFIMB001822"]
    found = await client.get(BASE, params={"name": "xoco"})
    assert [u["clues"] for u in found.json()["items"]] == ["DFIMB001822"]
    old = (await client.get(f"{BASE}/DFSSA003162")).json()
    assert old["replaced_by"] == "DFIMB001822"
    new = (await client.get(f"{BASE}/DFIMB001822")).json()
    assert (new["previous_clues"], new["replaced_by"]) == ("DFSSA003162", None)
    # A consent naming the old key would authorize nobody: it names the new one instead.
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    url = f"/api/v1/persons/{doc['curp']}/consents"
    old_key = await client.post(
        url, headers=me, json={"institution_code": 14, "clues": "DFSSA003162"}
    )
    assert old_key.status_code == 422
    assert "DFIMB001822" in old_key.json()["errors"][0]["reason"]


async def test_nearest_answers_places_of_care_only(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    clues_dir: Path,
    gazetteer: Gazetteer,
    tmp_path: Path,
) -> None:
    """IMSS-Bienestar's warehouse in Tijuana (BCIMB001335, typology ALMACENES) is in
    operation and sits exactly where this person stands, but nobody goes there to be seen:
    the health centre 0.6 km away comes first."""
    header, rows = read_rows(clues_dir / "clues_imss_bienestar_202606.csv")
    at = header.index("clues_imb")
    wanted = ("BCIMB001335", "BCIMB001055", "BCIMB000990")
    picked = [r for r in rows if r[at] in wanted]
    assert len(picked) == 3
    path = write_csv(tmp_path / "clues_imss_bienestar_202606.csv", header, picked)
    await service.import_file(sessions, path, gazetteer=gazetteer)
    near = await client.get(f"{BASE}/nearest", params={"lat": 32.4749, "lng": -117.0341})
    assert near.status_code == 200, near.text
    assert [u["clues"] for u in near.json()["items"]] == ["BCIMB001055", "BCIMB000990"]
    # The warehouse is still in the catalog: read by key, it is there.
    assert (await client.get(f"{BASE}/BCIMB001335")).status_code == 200
