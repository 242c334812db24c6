"""A person's assigned unit (it goes into the signed credential and FHIR's
managingOrganization) is a unit of the CLUES catalog under its current key: on registration,
on a change, in a bulk import and in a rectification (filed and answered)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.facilities import service as facilities
from salud.facilities.gazetteer import Gazetteer
from salud.identity import bulk
from salud.identity.models import DataRequest, Person
from tests.conftest import TokenFor
from tests.facilities.helpers import SAMPLE, read_rows, write_csv
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db

BASE = "/api/v1/persons"
AUDIT_KEY = b"clave-de-prueba-de-la-bitacora"
CURRENT = "HGIMB000011"  # IMSS-Bienestar, Acatlán (Hidalgo)
UNKNOWN = "HGIMB999999"  # the right shape; no such unit
OLD_XOCO, NEW_XOCO = "DFSSA003162", "DFIMB001822"  # Hospital General Xoco, SSA then IMSS-B


@pytest.fixture(scope="module")
def gazetteer(shared_data: Path) -> Gazetteer:
    return Gazetteer.load(shared_data / "inegi")


async def _load(
    sessions: async_sessionmaker[AsyncSession], gazetteer: Gazetteer, source: Path, target: Path,
    column: str, key: str,
) -> None:  # fmt: skip
    """One real unit of a real catalog file, imported."""
    header, rows = read_rows(source)
    at = header.index(column)
    picked = [r for r in rows if r[at] == key]
    assert len(picked) == 1
    await facilities.import_file(sessions, write_csv(target, header, picked), gazetteer=gazetteer)


@pytest.fixture
async def catalog(
    sessions: async_sessionmaker[AsyncSession], gazetteer: Gazetteer, shared_data: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A current unit, and the SSA key of Xoco (current until the IMSS-Bienestar file comes)."""
    clues = shared_data / "clues"
    await _load(sessions, gazetteer, clues / SAMPLE, tmp_path / SAMPLE, "CLUES", CURRENT)
    name = "clues_other_institutions_7states.csv"
    await _load(sessions, gazetteer, clues / name, tmp_path / name, "clues", OLD_XOCO)


async def _xoco_passes_to_imss_bienestar(
    sessions: async_sessionmaker[AsyncSession], gazetteer: Gazetteer, shared_data: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    name = "clues_imss_bienestar_202606.csv"
    path = shared_data / "clues" / name
    await _load(sessions, gazetteer, path, tmp_path / name, "clues_imb", NEW_XOCO)


def _problems(answer: httpx.Response) -> list[tuple[str, str]]:
    assert answer.headers["content-type"] == "application/problem+json", answer.text
    return [(e["field"], e["reason"]) for e in answer.json()["errors"]]


@pytest.mark.usefixtures("catalog")
async def test_registration_and_change_need_a_current_unit(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
    gazetteer: Gazetteer, shared_data: Path, tmp_path: Path,
) -> None:  # fmt: skip
    await _xoco_passes_to_imss_bienestar(sessions, gazetteer, shared_data, tmp_path)
    unknown = await client.post(BASE, json=person_doc(assigned_clues=UNKNOWN))
    assert unknown.status_code == 422, unknown.text
    assert _problems(unknown) == [("assigned_clues", f"{UNKNOWN} no está en el catálogo CLUES")]
    old = await client.post(BASE, json=person_doc(assigned_clues=OLD_XOCO))
    assert old.status_code == 422, old.text
    [(field, reason)] = _problems(old)
    assert field == "assigned_clues"
    assert f"es ahora la unidad {NEW_XOCO}" in reason

    doc = person_doc(assigned_clues=CURRENT)
    created = await client.post(BASE, json=doc)
    assert created.status_code == 201, created.text
    url = f"{BASE}/{doc['curp']}"
    for key in (UNKNOWN, OLD_XOCO):
        changed = await client.patch(url, json={"assigned_clues": key},
                                     headers={"If-Match": 'W/"1"'})  # fmt: skip
        assert changed.status_code == 422, changed.text
        assert [f for f, _ in _problems(changed)] == ["assigned_clues"]
    moved = await client.patch(url, json={"assigned_clues": NEW_XOCO},
                               headers={"If-Match": 'W/"1"'})  # fmt: skip
    assert moved.status_code == 200, moved.text
    cleared = await client.patch(url, json={"assigned_clues": None}, headers={"If-Match": 'W/"2"'})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["assigned_clues"] is None


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize("workers", [0, 2])
async def test_a_bulk_import_rejects_units_that_are_not_current(
    sessions: async_sessionmaker[AsyncSession], gazetteer: Gazetteer, shared_data: Path,
    tmp_path: Path, workers: int,
) -> None:  # fmt: skip
    from salud.cli.persons import unit_successors

    await _xoco_passes_to_imss_bienestar(sessions, gazetteer, shared_data, tmp_path)
    docs = [person_doc(assigned_clues=key) for key in (CURRENT, UNKNOWN, OLD_XOCO, NEW_XOCO)]
    docs.append(person_doc())
    path = tmp_path / "p.ndjson"
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    report = await bulk.import_file(sessions, path, actor="test", audit_key=AUDIT_KEY,
                                    rejects_out=io.BytesIO(), chunk_size=2, workers=workers,
                                    units=unit_successors)  # fmt: skip
    assert (report.inserted, report.rejected) == (3, 2)
    reasons = {r.line: r.reason for r in report.rejects}
    assert reasons == {
        2: f"assigned_clues: {UNKNOWN} no está en el catálogo CLUES",
        3: f"assigned_clues: {OLD_XOCO} es ahora la unidad {NEW_XOCO}: asigne la clave vigente",
    }
    async with sessions() as session:
        stored = dict((await session.execute(select(Person.curp, Person.assigned_clues))).all())
    assert stored == {docs[0]["curp"]: CURRENT, docs[3]["curp"]: NEW_XOCO, docs[4]["curp"]: None}

    # Without a way to look the catalog up, an assigned unit cannot be told good: refused.
    blind = await bulk.import_file(
        sessions, path, actor="test", audit_key=AUDIT_KEY, workers=workers
    )
    assert (blind.inserted, blind.already_present) == (0, 1)
    assert {r.line for r in blind.rejects} == {1, 2, 3, 4}
    assert all("no se puede comprobar" in r.reason for r in blind.rejects)


@pytest.mark.usefixtures("catalog")
async def test_a_rectification_of_the_unit_is_checked_when_filed_and_when_answered(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession], gazetteer: Gazetteer, shared_data: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    doc = person_doc(assigned_clues=CURRENT)
    assert (await client.post(BASE, json=doc)).status_code == 201
    url = f"{BASE}/{doc['curp']}/data-requests"
    me = token_for(Role.CITIZEN, curp=doc["curp"])

    def asking(key: str) -> dict[str, object]:
        return {"kind": "rectification", "description": "Me atienden en otra unidad",
                "requested_changes": {"assigned_clues": key}}  # fmt: skip

    refused = await anonymous.post(url, headers=me, json=asking(UNKNOWN))
    assert refused.status_code == 422, refused.text
    assert [f for f, _ in _problems(refused)] == ["requested_changes.assigned_clues"]
    filed = await anonymous.post(url, headers=me, json=asking(OLD_XOCO))  # current today
    assert filed.status_code == 201, filed.text
    folio = filed.json()["folio"]

    await _xoco_passes_to_imss_bienestar(sessions, gazetteer, shared_data, tmp_path)
    office = token_for(Role.INSTITUTION_ADMIN)
    answer = f"/api/v1/data-requests/{folio}/answer"
    grant = {"decision": "granted", "answer": "Procede el cambio"}
    granted = await anonymous.post(answer, headers=office, json=grant)
    assert granted.status_code == 409, granted.text
    [(field, reason)] = _problems(granted)
    assert field == "requested_changes.assigned_clues"
    assert NEW_XOCO in reason
    person = (await client.get(f"{BASE}/{doc['curp']}")).json()
    assert (person["assigned_clues"], person["version"]) == (CURRENT, 1)
    deny = {"decision": "denied", "answer": "La unidad cambió de clave"}
    denied = await anonymous.post(answer, headers=office, json=deny)
    assert denied.status_code == 200, denied.text


async def test_a_stored_rectification_that_no_longer_validates_is_a_409_naming_the_field(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """The changes are validated again when the office answers (a catalog may have changed
    since the request was filed): one that no longer passes was a 500."""
    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    filed = await anonymous.post(
        f"{BASE}/{doc['curp']}/data-requests", headers=token_for(Role.CITIZEN, curp=doc["curp"]),
        json={"kind": "rectification", "description": "Soy derechohabiente del ISSSTE",
              "requested_changes": {"affiliations": [
                  {"institution_code": 3, "valid_from": "2020-01-01"}]}},
    )  # fmt: skip
    assert filed.status_code == 201, filed.text
    folio = filed.json()["folio"]
    # As if the DGIS catalog had retired the institution since it was filed (Seguro
    # Popular's fate: 7 is no longer current there).
    async with sessions() as session, session.begin():
        request = await session.scalar(select(DataRequest).where(DataRequest.folio == folio))
        assert request is not None
        request.requested_changes = {
            "affiliations": [{"institution_code": 7, "valid_from": "2020-01-01"}]
        }
    answered = await anonymous.post(
        f"/api/v1/data-requests/{folio}/answer", headers=token_for(Role.INSTITUTION_ADMIN),
        json={"decision": "granted", "answer": "Procede la rectificación"},
    )  # fmt: skip
    assert answered.status_code == 409, answered.text
    [(field, reason)] = _problems(answered)
    assert field == "requested_changes.affiliations.0.institution_code"
    assert "vigente" in reason
    assert "improcedente" in answered.json()["detail"]
