"""Parsing every kind of CLUES file, from the real files and from small copies of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook

from salud.errors import InvalidInput
from salud.facilities.errors import UnknownFileKind
from salud.facilities.gazetteer import Gazetteer
from salud.facilities.importers import (
    FileKind,
    as_of_from_vintage,
    detect_kind,
    read_file,
)
from tests.facilities.helpers import SAMPLE, read_rows, write_csv


def test_dgis_monthly_sample(clues_dir: Path, gazetteer: Gazetteer) -> None:
    parsed = read_file(clues_dir / SAMPLE, gazetteer.states)
    assert parsed.kind is FileKind.DGIS_MONTHLY
    assert parsed.as_of == "2025-01"
    assert (parsed.rows_read, len(parsed.records), parsed.rejections) == (512, 512, [])
    first = parsed.records[0]
    assert first.row == 2  # the header is row 1
    assert first.clues == "HGIMB000011"
    v = first.values
    # Numeric-looking keys arrive as floats ("43540.0", "1") and are normalized.
    assert (v["postal_code"], v["state_key"], v["municipality_key"], v["locality_key"]) == (
        "43540",
        "13",
        "001",
        "0001",
    )
    # Trailing spaces stripped, runs of spaces collapsed.
    assert v["institution_name"] == "SERVICIOS DE SALUD IMSS BIENESTAR"
    assert v["street"] == "CALLE INDEPENDENCIA SIN NÚMERO, COLONIA ACATLAN CENTRO"
    assert (v["level_of_care"], v["status"], v["in_operation"]) == (1, "EN OPERACION", True)
    assert first.coordinates == (20.144656, -98.440023)
    assert first.has_location


def test_imss_bienestar_catalog(clues_dir: Path, gazetteer: Gazetteer) -> None:
    parsed = read_file(clues_dir / "clues_imss_bienestar_202606.csv", gazetteer.states)
    assert parsed.kind is FileKind.IMSS_BIENESTAR
    assert parsed.as_of == "2026-06"
    assert len(parsed.records) == 10_573
    assert not parsed.rejections
    by_key = {r.clues: r for r in parsed.records}
    ensenada = by_key["BCIMB000010"]
    assert ensenada.values["state_key"] == "02"  # "2" padded
    assert ensenada.values["level_of_care"] == 2
    out_of_service = by_key["BCIMB000022"]
    assert out_of_service.values["status"] == "FUERA DE OPERACION"
    assert out_of_service.values["in_operation"] is False
    levels = {r.values.get("level_of_care") for r in parsed.records}
    assert levels == {1, 2, 3, None}  # NO APLICA is a known "none"
    assert ensenada.values["previous_clues"] == "BCSSA000015"  # its key before IMSS-Bienestar
    assert sum("previous_clues" in r.values for r in parsed.records) == 10_503


def test_a_previous_key_of_another_state_is_refused(
    clues_dir: Path, gazetteer: Gazetteer, tmp_path: Path
) -> None:
    """A typo in clues_ssa_y_sme would hide an unrelated unit from "nearest": a previous key
    must be of the unit's own state, else the row is refused with the reason."""
    header, rows = read_rows(clues_dir / "clues_imss_bienestar_202606.csv")
    at = header.index("clues_ssa_y_sme")
    row = next(r for r in rows if r[0] == "BCIMB000010")
    wrong = [*row[:at], "DFSSA003162", *row[at + 1 :]]
    parsed = read_file(write_csv(tmp_path / "clues_imss_bienestar_202606.csv", header, [wrong]),
                       gazetteer.states)  # fmt: skip
    assert not parsed.records
    assert "otra entidad" in parsed.rejections[0].reason


def test_other_institutions(clues_dir: Path, gazetteer: Gazetteer) -> None:
    parsed = read_file(clues_dir / "clues_other_institutions_7states.csv", gazetteer.states)
    assert parsed.kind is FileKind.OTHER_INSTITUTIONS
    assert parsed.as_of is None  # the month is per row (column vintage)
    assert len(parsed.records) == 3_601
    assert not parsed.rejections
    by_key = {r.clues: r for r in parsed.records}
    assert by_key["HGCRO000015"].values["state_key"] == "13"  # from ent HG
    assert by_key["HGCRO000015"].as_of == "2026-08"
    assert "municipality_key" not in by_key["HGCRO000015"].values  # only a name in this file
    assert by_key["SRSMP000483"].coordinates is None  # has_coords False, no lat/lng
    assert by_key["DFSMP000155"].coordinates == (19.413837, 99.112919)  # kept for the report
    assert by_key["DFSSA017886"].unreadable_coordinates is not None  # latitude without longitude


@pytest.mark.parametrize(
    ("text", "month"),
    [
        ("DGIS 2026-08", "2026-08"),
        ("DGIS ~2025-Q1", "2025-01"),
        ("DGIS 2025-Q3", "2025-07"),
        ("DGIS 2018 (hospitalization units)", "2018-01"),
        ("", None),
    ],
)
def test_vintage_months(text: str, month: str | None) -> None:
    assert as_of_from_vintage(text) == month


def test_national_hours_list(clues_dir: Path, gazetteer: Gazetteer) -> None:
    parsed = read_file(clues_dir / "clues_national_horarios_202604.csv", gazetteer.states)
    assert parsed.kind is FileKind.NATIONAL_HOURS
    assert len(parsed.records) == 63_800
    assert not parsed.rejections
    first = parsed.records[0]
    assert first.clues == "ASCIJ000012"
    assert first.values == {}
    assert not first.has_location
    # DOMINGO..SABADO in the file, Monday first in the record.
    assert first.hours == {
        "open": "08:00",
        "close": "19:30",
        "days": [True, True, True, True, True, False, False],
        "blocks": 1,
    }
    assert sum(r.hours is None for r in parsed.records) == 14_988  # no schedule registered
    assert {r.clues[2:5] for r in parsed.records} >= {
        "IMB",
        "IMS",
        "IST",
        "SSA",
        "PMX",
        "SDN",
        "SMA",
    }


def test_hours_sheet(clues_dir: Path, gazetteer: Gazetteer) -> None:
    parsed = read_file(clues_dir / "clues_horarios_202501.csv", gazetteer.states)
    assert parsed.kind is FileKind.HOURS
    assert len(parsed.records) == 41_845
    assert not parsed.rejections
    assert parsed.records[0].hours == {"open": "08:00", "close": "19:30"}  # days unknown


def test_malformed_keys_are_rejected_per_row(tmp_path: Path, gazetteer: Gazetteer) -> None:
    path = write_csv(
        tmp_path / "horas.csv",
        ["CLUES", "HORA INICIO", "HORA FIN", "HORARIO"],
        [
            ["HGIMB000011", "08:00", "16:00", ""],
            ["HGIMB00001", "08:00", "16:00", ""],  # 10 characters
            ["ZZIMB000011", "08:00", "16:00", ""],  # no such state
            ["NEIMB000011", "08:00", "16:00", ""],  # NE is CURP's "born abroad", not a state
            ["HG1MB000011", "08:00", "16:00", ""],
            ["HGIMB000023", "25:00", "16:00", ""],  # bad hour
            ["HGIMB000011", "09:00", "17:00", ""],  # repeated key
            ["", "08:00", "16:00", ""],
        ],
    )
    parsed = read_file(path, gazetteer.states)
    assert [r.clues for r in parsed.records] == ["HGIMB000011"]
    assert [r.row for r in parsed.rejections] == [3, 4, 5, 6, 7, 8, 9]
    reasons = {r.row: r.reason for r in parsed.rejections}
    assert "mal formada" in reasons[3]
    assert "desconocido" in reasons[4]
    assert "desconocido" in reasons[5]
    assert "hora inválida" in reasons[7]
    assert "repetida" in reasons[8]
    assert "fila 2" in reasons[8]
    assert "vacía" in reasons[9]


def test_key_must_agree_with_state_and_institution_columns(
    tmp_path: Path, clues_dir: Path, gazetteer: Gazetteer
) -> None:
    header, rows = read_rows(clues_dir / SAMPLE)
    entity = header.index("CLAVE DE LA ENTIDAD")
    institution = header.index("CLAVE DE LA INSTITUCION")
    wrong_state = list(rows[0])
    wrong_state[entity] = "14"
    wrong_institution = list(rows[1])
    wrong_institution[institution] = "IMS"
    path = write_csv(tmp_path / SAMPLE, header, [wrong_state, wrong_institution, rows[2]])
    parsed = read_file(path, gazetteer.states)
    assert [r.clues for r in parsed.records] == [rows[2][0]]
    assert "no corresponde al estado HG" in parsed.rejections[0].reason
    assert "no coincide con la institución" in parsed.rejections[1].reason


def test_latin1_copy_reads_the_same(tmp_path: Path, clues_dir: Path, gazetteer: Gazetteer) -> None:
    header, rows = read_rows(clues_dir / SAMPLE)
    path = write_csv(tmp_path / SAMPLE, header, rows[:40], encoding="latin-1")
    assert "Á".encode("latin-1") in path.read_bytes()
    parsed = read_file(path, gazetteer.states)
    assert parsed.encoding in {"cp1252", "latin-1"}
    original = read_file(clues_dir / SAMPLE, gazetteer.states).records[:40]
    assert [r.values for r in parsed.records] == [r.values for r in original]
    assert parsed.records[0].values["name"] == "ACATLÁN"


def test_xlsx_with_float_keys(tmp_path: Path, clues_dir: Path, gazetteer: Gazetteer) -> None:
    header, rows = read_rows(clues_dir / SAMPLE)
    numeric = {
        "CLAVE DE LA ENTIDAD",
        "CLAVE DEL MUNICIPIO",
        "CLAVE DE LA LOCALIDAD",
        "CODIGO POSTAL",
    }
    numeric |= {"LATITUD", "LONGITUD"}
    book = Workbook()
    book.active.title = "Notas"
    sheet = book.create_sheet("CLUES_202501")
    sheet.append(header)
    for row in rows[:25]:
        # Excel stores the keys as numbers: 13.0, 1.0, 43540.0
        sheet.append(
            [float(v) if h in numeric and v else v for h, v in zip(header, row, strict=True)]
        )
    path = tmp_path / "ESTABLECIMIENTO_SALUD_202501.xlsx"
    book.save(path)
    parsed = read_file(path, gazetteer.states)
    assert parsed.kind is FileKind.DGIS_MONTHLY
    assert parsed.as_of == "2025-01"
    original = read_file(clues_dir / SAMPLE, gazetteer.states).records[:25]
    assert [r.values for r in parsed.records] == [r.values for r in original]
    assert [r.coordinates for r in parsed.records] == [r.coordinates for r in original]


def test_unknown_layout_is_named(tmp_path: Path, gazetteer: Gazetteer) -> None:
    path = write_csv(
        tmp_path / "ESTABLECIMIENTO_SALUD_202501.csv", ["curp", "nombre"], [["X", "Y"]]
    )
    with pytest.raises(UnknownFileKind) as caught:
        read_file(path, gazetteer.states)
    assert caught.value.problems[0].field == "path"
    assert "ningún formato conocido" in caught.value.detail
    with pytest.raises(InvalidInput):
        detect_kind(tmp_path / "no-such-file.csv")


def test_kind_comes_from_the_header_not_the_name(tmp_path: Path, clues_dir: Path) -> None:
    header, rows = read_rows(clues_dir / "clues_horarios_202501.csv")
    path = write_csv(tmp_path / "ESTABLECIMIENTO_SALUD_202501.csv", header, rows[:3])
    assert detect_kind(path) is FileKind.HOURS


def test_a_row_of_another_width_is_refused_not_read_askew(
    tmp_path: Path, clues_dir: Path, gazetteer: Gazetteer
) -> None:
    """An unquoted comma in a unit's name shifts every later cell one column right (the
    status would read "1", the coordinates a name); a cut line loses its last cells. Both
    are refused with the reason, and the rows around them land."""
    header, rows = read_rows(clues_dir / SAMPLE)
    name = header.index("NOMBRE DE LA UNIDAD")
    shifted = [*rows[0][: name + 1], "PROPIO", *rows[0][name + 1 :]]
    cut = rows[1][:40]
    trimmed = list(rows[2])
    while trimmed and not trimmed[-1]:  # a spreadsheet's export drops trailing empty cells
        trimmed.pop()
    assert len(trimmed) < len(header)
    path = write_csv(tmp_path / "ESTABLECIMIENTO_SALUD_202501.csv", header,
                     [shifted, cut, trimmed, rows[3]])  # fmt: skip
    parsed = read_file(path, gazetteer.states)
    assert [r.clues for r in parsed.records] == [rows[2][0], rows[3][0]]
    reasons = {r.row: (r.clues, r.reason) for r in parsed.rejections}
    assert sorted(reasons) == [2, 3]
    assert reasons[2][0] == rows[0][0]
    assert f"tiene {len(header) + 1} columnas" in reasons[2][1]
    assert "coma sin comillas" in reasons[2][1]
    assert "40 columnas" in reasons[3][1]
    assert "cortada" in reasons[3][1]
