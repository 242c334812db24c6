"""Importing CLUES files into the database: merging, versions and the import report."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.errors import InvalidInput, NotFound
from salud.facilities import service
from salud.facilities.gazetteer import Gazetteer
from salud.facilities.importers import UNNAMED
from salud.facilities.models import HealthUnit, HealthUnitVersion
from salud.facilities.nearest import IndexCache
from salud.facilities.schemas import HealthUnitRead
from tests.facilities.helpers import SAMPLE, read_rows, write_csv

pytestmark = pytest.mark.db

Sessions = async_sessionmaker[AsyncSession]
OTHER_HEADER = [
    "clues", "nombre", "inst_code", "institucion", "ent", "estado", "municipio", "tipo",
    "nivel", "estatus", "lat", "lng", "has_coords", "source", "vintage",
]  # fmt: skip


def _other(
    clues: str, municipio: str, lat: str, lng: str, vintage: str = "DGIS 2026-08"
) -> list[str]:
    return [
        clues, f"Unidad {clues}", clues[2:5], "IMSS", clues[:2], "Hidalgo", municipio,
        "UNIDAD DE MEDICINA FAMILIAR", "1", "EN OPERACION", lat, lng, str(bool(lat)), "test",
        vintage,
    ]  # fmt: skip


async def _count(sessions: Sessions, model: type[HealthUnit] | type[HealthUnitVersion]) -> int:
    async with sessions() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def _unit(sessions: Sessions, clues: str) -> HealthUnitRead:
    async with sessions() as s:
        return await service.get_unit(s, clues)


async def test_import_the_hidalgo_sample(
    sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer
) -> None:
    seen: list[tuple[int, int]] = []
    report = await service.import_file(
        sessions,
        clues_dir / SAMPLE,
        gazetteer=gazetteer,
        progress=lambda _w, d, t: seen.append((d, t)),
    )
    assert (report.read, report.created, report.updated, report.unchanged) == (512, 512, 0, 0)
    assert report.rejected == []
    assert report.as_of == "2025-01"
    assert seen[0] == (0, 512)
    assert seen[-1] == (512, 512)
    unit = await _unit(sessions, "hgimb000011")
    assert unit.name == "ACATLÁN"
    assert unit.version == 1
    assert (unit.state_key, unit.municipality_key, unit.locality_key, unit.postal_code) == (
        "13", "001", "0001", "43540",
    )  # fmt: skip
    assert (unit.latitude, unit.longitude, unit.location_precision) == (
        20.144656,
        -98.440023,
        "exact",
    )
    assert unit.in_operation is True
    assert unit.level_of_care == 1
    assert unit.institution == "Servicios de Salud IMSS-Bienestar"
    assert await _count(sessions, HealthUnit) == 512


async def test_reimport_changes_only_what_changed(
    sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    await service.import_file(sessions, clues_dir / SAMPLE, gazetteer=gazetteer)
    again = await service.import_file(sessions, clues_dir / SAMPLE, gazetteer=gazetteer)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 512)
    assert await _count(sessions, HealthUnitVersion) == 0

    header, rows = read_rows(clues_dir / SAMPLE)
    status, name = header.index("ESTATUS DE OPERACION"), header.index("NOMBRE DE LA UNIDAD")
    changed = [list(r) for r in rows]
    changed[0][status] = "FUERA DE OPERACION"
    changed[0][name] = "ACATLÁN (CERRADA POR OBRA)"
    modified = write_csv(tmp_path / SAMPLE, header, changed)  # same release month, corrected
    report = await service.import_file(sessions, modified, gazetteer=gazetteer)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 511)

    unit = await _unit(sessions, "HGIMB000011")
    assert unit.version == 2
    assert unit.in_operation is False
    assert unit.name == "ACATLÁN (CERRADA POR OBRA)"
    assert unit.status == "FUERA DE OPERACION"
    other = await _unit(sessions, "HGIMB000023")
    assert other.version == 1
    async with sessions() as s:
        history = await service.unit_history(s, "HGIMB000011")
    assert [v.version for v in history.versions] == [1]
    old = history.versions[0]
    assert old.values["name"] == "ACATLÁN"
    assert old.values["status"] == "EN OPERACION"
    assert old.values["in_operation"] is True
    assert old.source == SAMPLE
    assert history.current.version == 2


async def test_an_older_release_does_not_undo_a_newer_one(
    sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    header, rows = read_rows(clues_dir / SAMPLE)
    name = header.index("NOMBRE DE LA UNIDAD")
    renamed = [list(r) for r in rows[:3]]
    renamed[0][name] = "NOMBRE NUEVO"
    newer = write_csv(tmp_path / "ESTABLECIMIENTO_SALUD_202602.csv", header, renamed)
    await service.import_file(sessions, newer, gazetteer=gazetteer)
    older = tmp_path / "old" / SAMPLE
    older.parent.mkdir()
    shutil.copy(clues_dir / SAMPLE, older)
    report = await service.import_file(sessions, older, gazetteer=gazetteer)
    assert report.created == 509
    unit = await _unit(sessions, "HGIMB000011")
    assert unit.name == "NOMBRE NUEVO"
    assert unit.version == 1


async def test_hours_lists_set_hours_and_create_minimal_units(
    sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    await service.import_file(sessions, clues_dir / SAMPLE, gazetteer=gazetteer)
    hours = write_csv(
        tmp_path / "clues_horarios_202501.csv",
        ["CLUES", "HORA INICIO", "HORA FIN", "HORARIO"],
        [["HGIMB000011", "08:00", "16:00", ""], ["HGSSA999993", "07:00", "15:00", ""]],
    )
    report = await service.import_file(sessions, hours, gazetteer=gazetteer)
    assert (report.created, report.updated) == (1, 1)
    known = await _unit(sessions, "HGIMB000011")
    assert known.name == "ACATLÁN"
    assert known.version == 2
    assert known.hours is not None
    assert known.hours.open == "08:00"
    assert known.hours.days is None
    assert known.latitude == 20.144656
    new = await _unit(sessions, "HGSSA999993")
    assert new.name == UNNAMED
    assert new.institution_code == "SSA"
    assert new.state_key == "13"
    assert new.location_precision == "none"
    assert new.latitude is None
    assert new.in_operation is None

    national = write_csv(
        tmp_path / "clues_national_horarios_202604.csv",
        ["CLUES", "ENT", "INST", "DOMINGO", "LUNES", "MARTES", "MIERCOLES", "JUEVES", "VIERNES",
         "SABADO", "HORA INICIO", "HORA FIN", "N_BLOQUES_HORARIO"],
        [["HGIMB000011", "HG", "IMB", "NO", *["SI"] * 6, "08:00", "20:00", "1"],
         ["HGIMB000023", "HG", "IMB", *[""] * 9, "0"],
         ["HGIMB000035", "DF", "IMB", "NO", *["SI"] * 5, "NO", "08:00", "16:00", "1"]],
    )  # fmt: skip
    report = await service.import_file(sessions, national, gazetteer=gazetteer)
    assert (report.updated, report.unchanged) == (1, 1)
    assert [r.row for r in report.rejected] == [4]
    assert "ENT" in report.rejected[0].reason
    known = await _unit(sessions, "HGIMB000011")
    assert known.hours is not None
    assert known.hours.days == [True, True, True, True, True, True, False]
    assert (known.hours.open, known.hours.close, known.hours.blocks) == ("08:00", "20:00", 1)
    # The older hours sheet, imported again, no longer changes the newer hours.
    again = await service.import_file(sessions, hours, gazetteer=gazetteer)
    assert again.updated == 0


async def test_placement_and_coordinate_reports(
    sessions: Sessions, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clues_other_institutions_7states.csv",
        OTHER_HEADER,
        [
            _other("HGIMS000001", "Pachuca de Soto", "", ""),  # no coordinates
            _other("HGIMS000002", "PACHUCA DE SOTO", "20.1011", "98.7591"),  # lost its sign
            _other("HGIMS000003", "Acatlán", "19.4326", "-99.1332"),  # in Mexico City
            _other("HGIMS000004", "Pachuca de Soto", "20.1011", "-98.7591"),
            _other("HGIMS00005", "Pachuca de Soto", "20.1", "-98.7"),  # malformed key
            _other("HGIMS000006", "Municipio Inexistente", "", ""),
        ],
    )
    report = await service.import_file(sessions, path, gazetteer=gazetteer)
    assert report.created == 5
    assert [(r.row, r.clues) for r in report.rejected] == [(6, "HGIMS00005")]
    assert "mal formada" in report.rejected[0].reason
    assert report.placed_approximately == 2
    kinds = {(s.clues, s.kind) for s in report.suspicious}
    assert kinds == {("HGIMS000002", "outside_mexico"), ("HGIMS000003", "far_from_seat")}

    placed = await _unit(sessions, "HGIMS000001")
    assert placed.location_precision == "municipality"
    assert placed.municipality_key == "048"
    assert placed.location_note is not None
    assert "aproximada" in placed.location_note
    flipped = await _unit(sessions, "HGIMS000002")
    assert flipped.location_precision == "municipality"
    assert flipped.longitude is not None
    assert flipped.longitude < 0
    assert flipped.location_note is not None
    assert "fuera de México" in flipped.location_note
    far = await _unit(sessions, "HGIMS000003")
    assert (far.latitude, far.location_precision) == (19.4326, "exact")
    assert far.location_note is not None
    assert "verificar" in far.location_note
    exact = await _unit(sessions, "HGIMS000004")
    assert exact.location_precision == "exact"
    assert exact.location_note is None
    nowhere = await _unit(sessions, "HGIMS000006")
    assert nowhere.location_precision == "none"
    assert nowhere.municipality_key is None

    # Later, a file with exact coordinates replaces the approximate placement...
    fixed = write_csv(
        tmp_path / "fixed.csv",
        OTHER_HEADER,
        [_other("HGIMS000001", "Pachuca de Soto", "20.12", "-98.73")],
    )
    assert (await service.import_file(sessions, fixed, gazetteer=gazetteer)).updated == 1
    assert (await _unit(sessions, "HGIMS000001")).location_precision == "exact"
    # ...and a file without coordinates does not bring it back to approximate.
    again = await service.import_file(sessions, path, gazetteer=gazetteer)
    assert (await _unit(sessions, "HGIMS000001")).latitude == 20.12
    assert again.placed_approximately == 1  # only HGIMS000002


async def test_shared_catalog_in_small(
    sessions: Sessions, shared_data: Path, tmp_path: Path
) -> None:
    """The five shared files (their first rows), in the catalog's import order, twice."""
    (tmp_path / "clues").mkdir()
    (tmp_path / "inegi").symlink_to(shared_data / "inegi")
    for name in service.SHARED_FILES:
        header, rows = read_rows(shared_data / "clues" / name)
        write_csv(tmp_path / "clues" / name, header, rows[:300])
    first = await service.import_shared_catalog(sessions, tmp_path)
    assert [r.path.name for r in first.files] == list(service.SHARED_FILES)
    assert sum(r.created for r in first.files) == await _count(sessions, HealthUnit)
    assert "archivos" in str(first)
    second = await service.import_shared_catalog(sessions, tmp_path)
    assert all(r.created == r.updated == 0 for r in second.files)


async def test_lookups(sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer) -> None:
    await service.import_file(sessions, clues_dir / SAMPLE, gazetteer=gazetteer)
    async with sessions() as s:
        with pytest.raises(NotFound):
            await service.get_unit(s, "HGIMB999999")
        with pytest.raises(InvalidInput) as bad:
            await service.get_unit(s, "HG-IMB-1")
        assert bad.value.problems[0].field == "clues"
        page = await service.search_units(s, state="hg", name="acatlan", limit=5)
        assert page.total >= 1
        assert page.items[0].clues == "HGIMB000011"
        assert all("ACATLAN" in item.name.replace("Á", "A") for item in page.items)
        everything = await service.search_units(s, institution="IMB", limit=200, offset=500)
        assert everything.total == 512
        assert len(everything.items) == 12
        with pytest.raises(InvalidInput):
            await service.search_units(s, limit=1000)


async def test_index_cache_follows_the_catalog(
    sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer
) -> None:
    cache = IndexCache(check_every=0)
    lazy = IndexCache(check_every=3600)
    async with sessions() as s:
        assert (await cache.get(s)).size == 0
        assert (await lazy.get(s)).size == 0
    await service.import_file(sessions, clues_dir / SAMPLE, gazetteer=gazetteer)
    async with sessions() as s:
        index = await cache.get(s)
        assert index.size == 492  # the sample's 512 units but its 20 mobile units
        assert await cache.get(s) is index  # unchanged catalog: the same index
        assert (await lazy.get(s)).size == 0  # not checked again before its time
        query = service.nearest_query(20.1447, -98.44, k=3, institutions=["imb"])
        found = await service.nearest(s, query, cache)
    assert [u.clues for u in found.items][:1] == ["HGIMB000011"]


async def test_rows_a_column_cannot_hold_or_with_an_unknown_level_are_refused_by_row(
    sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    """A 400-character name failed the whole batch of 2,000 rows on PostgreSQL (SQLite kept
    it); a level of care the importer does not know was stored as "none" and the unit left
    every search by level. Each is now its row's rejection, and the rest land."""
    header, rows = read_rows(clues_dir / SAMPLE)
    name, level = header.index("NOMBRE DE LA UNIDAD"), header.index("NIVEL ATENCION")
    picked = [list(r) for r in rows[:5]]
    picked[0][name] = "X" * 400
    picked[1][level] = "7"
    picked[2][level] = "NO APLICA"
    path = write_csv(tmp_path / "ESTABLECIMIENTO_SALUD_202602.csv", header, picked)
    report = await service.import_file(sessions, path, gazetteer=gazetteer)
    assert report.created == 3
    reasons = {r.row: r.reason for r in report.rejected}
    assert set(reasons) == {2, 3}
    assert "name: más de 300" in reasons[2]
    assert "nivel de atención" in reasons[3]
    assert (await _unit(sessions, picked[2][0])).level_of_care is None


async def test_undated_data_never_overrides_a_dated_release_and_months_are_checked(
    sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    """An extract with no month in its name was stamped with the month of its import, so
    the official release of an earlier month could no longer correct what it said."""
    header, rows = read_rows(clues_dir / SAMPLE)
    name = header.index("NOMBRE DE LA UNIDAD")
    old = [list(r) for r in rows[:2]]
    old[0][name] = "NOMBRE VIEJO DE UN EXTRACTO SIN FECHA"
    undated = write_csv(tmp_path / "extracto_clues.csv", header, old)
    await service.import_file(sessions, undated, gazetteer=gazetteer)
    assert (await _unit(sessions, old[0][0])).name == "NOMBRE VIEJO DE UN EXTRACTO SIN FECHA"
    fresh = [list(r) for r in rows[:2]]
    fresh[0][name] = "NOMBRE OFICIAL"
    release = write_csv(tmp_path / "ESTABLECIMIENTO_SALUD_202511.csv", header, fresh)
    await service.import_file(sessions, release, gazetteer=gazetteer)
    assert (await _unit(sessions, old[0][0])).name == "NOMBRE OFICIAL"
    await service.import_file(sessions, undated, gazetteer=gazetteer)  # again: no override
    assert (await _unit(sessions, old[0][0])).name == "NOMBRE OFICIAL"
    for month in ("2025-1", "2025-13", "0000-01", "25-01"):
        with pytest.raises(InvalidInput, match="AAAA-MM"):
            await service.import_file(sessions, release, gazetteer=gazetteer, as_of=month)


async def test_a_file_that_is_no_table_is_named_not_a_traceback(
    sessions: Sessions, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    workbook = tmp_path / "clues.xlsx"
    workbook.write_bytes(b"no es un libro de Excel")
    with pytest.raises(InvalidInput, match=r"clues\.xlsx"):
        await service.import_file(sessions, workbook, gazetteer=gazetteer)


async def test_two_imports_at_once_take_turns(
    sessions: Sessions, clues_dir: Path, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    """A scheduled import and an operator's, of files that change the same unit, at once:
    one makes the change and the other finds it made (one new version, not two)."""
    await service.import_file(sessions, clues_dir / SAMPLE, gazetteer=gazetteer)
    header, rows = read_rows(clues_dir / SAMPLE)
    name = header.index("NOMBRE DE LA UNIDAD")
    changed = [list(r) for r in rows]
    changed[0][name] = "ACATLÁN (AMPLIADA)"
    (tmp_path / "a").mkdir()
    one = write_csv(tmp_path / "a" / SAMPLE, header, changed)
    two = write_csv(tmp_path / SAMPLE, header, changed)
    reports = await asyncio.gather(
        service.import_file(sessions, one, gazetteer=gazetteer),
        service.import_file(sessions, two, gazetteer=gazetteer),
    )
    assert sorted(r.updated for r in reports) == [0, 1]
    assert sum(r.created for r in reports) == 0
    unit = await _unit(sessions, "HGIMB000011")
    assert (unit.version, unit.name) == (2, "ACATLÁN (AMPLIADA)")
    async with sessions() as s:
        history = await service.unit_history(s, "HGIMB000011")
    assert [v.version for v in history.versions] == [1]
