"""Readers of the CLUES catalog files: pure parsing into normalized unit records.

Five layouts are known, recognized by their header row (never by the file name):

* the official DGIS monthly file ``ESTABLECIMIENTO_SALUD_YYYYMM`` (67 columns, .xlsx or .csv);
* the IMSS-Bienestar catalog (``clues_imb``, ``latitud``, ``longitud`` ...);
* units of other institutions (``clues, nombre, inst_code, ent, municipio, lat, lng ...``);
* the national list of every CLUES key with its days and hours (``CLUES, ENT, INST, LUNES ...``);
* the hours sheet (``CLUES, HORA INICIO, HORA FIN``), with times but no days.

A record carries only what its file knows; merging with what the database already holds
is the service's job. A bad row is rejected with its row number and the reason, never fixed.
Row numbers count the header row as 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from salud.errors import InvalidInput
from salud.facilities.errors import UnknownFileKind
from salud.facilities.gazetteer import StateTable
from salud.facilities.hours import parse_time
from salud.kit.text import fold

CLUES_RE = re.compile(r"^[A-Z]{2}[A-Z]{3}\d{6}$")
CLUES_FORMAT = "11 caracteres: estado (2 letras), institución (3 letras) y 6 dígitos"
# A unit known only by its key (from the hours lists): honest about what the catalog lacks.
UNNAMED = "(sin nombre en el catálogo)"
_HEADER_SCAN_ROWS = 10
_DATE_IN_NAME = re.compile(r"(?<!\d)(20\d{2})(0[1-9]|1[0-2])(?!\d)")


class FileKind(StrEnum):
    DGIS_MONTHLY = "dgis_monthly"
    IMSS_BIENESTAR = "imss_bienestar"
    OTHER_INSTITUTIONS = "other_institutions"
    NATIONAL_HOURS = "national_hours"
    HOURS = "hours"


KIND_LABELS: dict[FileKind, str] = {
    FileKind.DGIS_MONTHLY: "establecimientos de salud DGIS (ESTABLECIMIENTO_SALUD_AAAAMM)",
    FileKind.IMSS_BIENESTAR: "catálogo IMSS-Bienestar",
    FileKind.OTHER_INSTITUTIONS: "unidades de otras instituciones",
    FileKind.NATIONAL_HOURS: "claves CLUES nacionales con días y horarios",
    FileKind.HOURS: "horarios (CLUES, HORA INICIO, HORA FIN)",
}

_DAYS = ("LUNES", "MARTES", "MIERCOLES", "JUEVES", "VIERNES", "SABADO", "DOMINGO")

# Columns that identify each layout (folded: uppercase, no accents). Most specific first:
# the hours sheet's columns are a subset of the national list's.
_SIGNATURES: tuple[tuple[FileKind, frozenset[str]], ...] = (
    (
        FileKind.DGIS_MONTHLY,
        frozenset(
            {
                "CLUES",
                "CLAVE DE LA INSTITUCION",
                "CLAVE DE LA ENTIDAD",
                "CLAVE DEL MUNICIPIO",
                "NOMBRE DE LA UNIDAD",
                "ESTATUS DE OPERACION",
                "NIVEL ATENCION",
                "LATITUD",
                "LONGITUD",
            }
        ),
    ),
    (
        FileKind.IMSS_BIENESTAR,
        frozenset(
            {
                "CLUES_IMB",
                "CLAVE_DE_LA_ENTIDAD",
                "CLAVE_DEL_MUNICIPIO",
                "NOMBRE_DE_LA_UNIDAD",
                "ESTATUS_DE_OPERACION",
                "LATITUD",
                "LONGITUD",
            }
        ),
    ),
    (
        FileKind.OTHER_INSTITUTIONS,
        frozenset({"CLUES", "NOMBRE", "INST_CODE", "ENT", "MUNICIPIO", "LAT", "LNG"}),
    ),
    (
        FileKind.NATIONAL_HOURS,
        frozenset({"CLUES", "ENT", "INST", "HORA INICIO", "HORA FIN", *_DAYS}),
    ),
    (FileKind.HOURS, frozenset({"CLUES", "HORA INICIO", "HORA FIN"})),
)


@dataclass(slots=True)
class UnitRecord:
    """One unit as one file describes it."""

    row: int
    clues: str
    # health_units columns this file knows. A key with None means the file says "none"
    # (e.g. level NO APLICA); an absent key means the file does not know.
    values: dict[str, Any] = field(default_factory=dict)
    # The file has coordinate columns, so it speaks about the location of the unit.
    has_location: bool = False
    coordinates: tuple[float, float] | None = None
    # Coordinates present but not numbers: the raw text, for the report.
    unreadable_coordinates: str | None = None
    # Partial hours: only the keys the file knows ("days", "open", "close", "blocks").
    hours: dict[str, Any] | None = None
    # Month the data describes ("YYYY-MM"); None when neither the file nor the row says.
    as_of: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    row: int
    clues: str
    reason: str


@dataclass
class ParsedFile:
    path: Path
    kind: FileKind
    as_of: str | None
    rows_read: int
    records: list[UnitRecord]
    rejections: list[Rejection]
    encoding: str | None = None


class RowError(ValueError):
    """A row that cannot be used; its message is the reason shown to the operator."""


# --- reading tables ------------------------------------------------------------------------


def decode(data: bytes) -> tuple[str, str]:
    """UTF-8 when it decodes, else Windows-1252 (DGIS exports), else Latin-1 (never fails)."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d])


def _csv_rows(path: Path) -> tuple[Iterator[tuple[int, list[str]]], str]:
    text, encoding = decode(path.read_bytes())
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line))
    rows = ((n, [c.strip() for c in row]) for n, row in enumerate(reader, start=1))
    return rows, encoding


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        names = workbook.sheetnames
        chosen = next((n for n in names if re.fullmatch(r"(?i)CLUES_\d{6}", n.strip())), names[0])
        sheet = workbook[chosen]
        for n, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield n, [_cell(v) for v in row]
    finally:
        workbook.close()


def _detect(header: list[str]) -> FileKind | None:
    names = {fold(h) for h in header if h}
    for kind, required in _SIGNATURES:
        if required <= names:
            return kind
    return None


def _open_table(
    path: Path,
) -> tuple[FileKind, list[str], Iterator[tuple[int, list[str]]], str | None]:
    if not path.is_file():
        raise InvalidInput.on("path", f"no existe el archivo {path}")
    encoding: str | None = None
    if path.suffix.lower() in {".xlsx", ".xlsm"}:
        rows = _xlsx_rows(path)
    else:
        rows, encoding = _csv_rows(path)
    for n, row in rows:
        kind = _detect(row)
        if kind is not None:
            return kind, [fold(h) for h in row], rows, encoding
        if n >= _HEADER_SCAN_ROWS:
            break
    raise UnknownFileKind(str(path), list(KIND_LABELS.values()))


def detect_kind(path: Path) -> FileKind:
    """The layout of a file, from its header row; UnknownFileKind when it is none we know."""
    kind, _header, rows, _encoding = _open_table(path)
    if hasattr(rows, "close"):
        rows.close()
    return kind


# --- normalizing values -----------------------------------------------------------------------

_INTEGER = re.compile(r"^(\d+)(?:\.0*)?$")


def _digits(text: str, width: int) -> str | None:
    """ "43540.0" -> "43540", "5.0" -> "00005" for width 5. None when not a whole number."""
    match = _INTEGER.match(text.strip())
    if match is None:
        return None
    digits = str(int(match.group(1)))
    return digits.zfill(width) if len(digits) <= width else None


def _text(text: str) -> str | None:
    value = " ".join(text.split())
    return value if value and fold(value) != "NO ESPECIFICADO" else None


def _level(text: str) -> tuple[bool, int | None]:
    """(known, level): PRIMER/SEGUNDO/TERCER NIVEL or 1/2/3; NO APLICA is known and None.
    Anything else refuses the row: read as "none", the unit would drop out of every search
    by level."""
    value = fold(text)
    if not value:
        return False, None
    level = {"PRIMER NIVEL": 1, "SEGUNDO NIVEL": 2, "TERCER NIVEL": 3, "1": 1, "2": 2, "3": 3}
    if value in level:
        return True, level[value]
    match = _INTEGER.match(value)
    if match and int(match.group(1)) in (1, 2, 3):
        return True, int(match.group(1))
    if value in ("NO APLICA", "NO ESPECIFICADO"):
        return True, None
    raise RowError(
        f"nivel de atención {text.strip()[:40]!r} desconocido "
        "(PRIMER, SEGUNDO o TERCER NIVEL, 1 a 3, o NO APLICA)"
    )


# The widths of the health_units text columns (facilities/models.py): a longer value refuses
# its row with the reason (on PostgreSQL it failed the whole batch of 2,000 rows).
_WIDTHS = {"name": 300, "institution_name": 200, "municipality_name": 150,
           "locality_name": 200, "unit_type": 120, "typology": 150, "status": 60,
           "street": 300}  # fmt: skip


def _check_widths(record: UnitRecord) -> None:
    for column, width in _WIDTHS.items():
        value = record.values.get(column)
        if isinstance(value, str) and len(value) > width:
            raise RowError(f"{column}: más de {width} caracteres ({len(value)})")


def _status(values: dict[str, Any], text: str) -> None:
    status = fold(text)
    if status:
        values["status"] = status
        # Only a unit "EN OPERACION" gives service; under construction, pending or
        # out of operation do not.
        values["in_operation"] = status == "EN OPERACION"


def _coordinates(record: UnitRecord, lat_text: str, lng_text: str) -> None:
    record.has_location = True
    if not lat_text and not lng_text:
        return
    try:
        lat, lng = float(lat_text), float(lng_text)
    except ValueError:
        record.unreadable_coordinates = f"{lat_text or '(vacía)'}, {lng_text or '(vacía)'}"
        return
    if math.isfinite(lat) and math.isfinite(lng) and not (lat == 0 and lng == 0):
        record.coordinates = (lat, lng)
    else:
        record.unreadable_coordinates = f"{lat_text}, {lng_text}"


def _set(values: dict[str, Any], column: str, value: str | None) -> None:
    if value is not None:
        values[column] = value


def as_of_from_name(path: Path) -> str | None:
    match = _DATE_IN_NAME.search(path.stem)
    return f"{match.group(1)}-{match.group(2)}" if match else None


def as_of_from_vintage(text: str) -> str | None:
    """ "DGIS 2026-08" -> 2026-08; "~2025-Q1" -> 2025-01; "2018 (...)" -> 2018-01."""
    if match := re.search(r"(20\d{2}|19\d{2})-(0[1-9]|1[0-2])(?!\d)", text):
        return f"{match.group(1)}-{match.group(2)}"
    if match := re.search(r"(\d{4})-Q([1-4])", text, re.IGNORECASE):
        return f"{match.group(1)}-{(int(match.group(2)) - 1) * 3 + 1:02d}"
    if match := re.search(r"(?<!\d)(20\d{2}|19\d{2})(?!\d)", text):
        return f"{match.group(1)}-01"
    return None


# --- row parsers ------------------------------------------------------------------------------

Row = dict[str, str]


class _Context:
    def __init__(self, states: StateTable) -> None:
        self.states = states

    def clues(self, text: str) -> str:
        key = text.strip().upper()
        if not key:
            raise RowError("clave CLUES vacía")
        if not CLUES_RE.match(key):
            raise RowError(f"clave CLUES mal formada: {key!r} (se esperan {CLUES_FORMAT})")
        if self.states.by_code(key[:2]) is None:
            raise RowError(f"estado {key[:2]!r} de la clave CLUES {key} desconocido")
        return key

    def state_key_of(self, clues: str, numeric: str, state_column: str) -> str:
        """The INEGI state key, checked against the letters of the CLUES key."""
        state = self.states.by_code(clues[:2])
        assert state is not None
        if numeric.strip():
            key = _digits(numeric, 2)
            if key != state.key:
                raise RowError(
                    f"{state_column} {numeric!r} no corresponde al estado {state.code} "
                    f"({state.name}, clave INEGI {state.key}) de la clave CLUES"
                )
        return state.key

    @staticmethod
    def same_institution(clues: str, code: str, column: str) -> None:
        code = code.strip().upper()
        if code and code != clues[2:5]:
            raise RowError(
                f"{column} {code!r} no coincide con la institución {clues[2:5]!r} de la clave CLUES"
            )

    @staticmethod
    def same_state(clues: str, code: str, column: str) -> None:
        code = code.strip().upper()
        if code and code != clues[:2]:
            raise RowError(
                f"{column} {code!r} no coincide con el estado {clues[:2]!r} de la clave CLUES"
            )


def _name(values: dict[str, Any], text: str) -> None:
    name = _text(text)
    if name is None:
        raise RowError("falta el nombre de la unidad")
    values["name"] = name


def _street(row: Row) -> str | None:
    def part(column: str) -> str:
        value = _text(row.get(column, ""))
        return value or ""

    number = part("NUMERO EXTERIOR")
    inner = part("NUMERO INTERIOR")
    if fold(inner) in {"", "SIN NUMERO", "S/N", "SN"}:
        inner = ""
    street = " ".join(p for p in (part("TIPO DE VIALIDAD"), part("VIALIDAD"), number) if p)
    if inner:
        street += f" INT. {inner}"
    settlement = " ".join(p for p in (part("TIPO DE ASENTAMIENTO"), part("ASENTAMIENTO")) if p)
    full = ", ".join(p for p in (street, settlement) if p)
    return full[:300] or None


def _parse_dgis(ctx: _Context, n: int, row: Row) -> UnitRecord:
    clues = ctx.clues(row["CLUES"])
    ctx.same_institution(clues, row["CLAVE DE LA INSTITUCION"], "CLAVE DE LA INSTITUCION")
    values: dict[str, Any] = {
        "state_key": ctx.state_key_of(clues, row["CLAVE DE LA ENTIDAD"], "CLAVE DE LA ENTIDAD")
    }
    _name(values, row["NOMBRE DE LA UNIDAD"])
    _set(values, "institution_name", _text(row.get("NOMBRE DE LA INSTITUCION", "")))
    _set(values, "municipality_key", _digits(row["CLAVE DEL MUNICIPIO"], 3))
    _set(values, "municipality_name", _text(row.get("MUNICIPIO", "")))
    _set(values, "locality_key", _digits(row.get("CLAVE DE LA LOCALIDAD", ""), 4))
    _set(values, "locality_name", _text(row.get("LOCALIDAD", "")))
    _set(values, "unit_type", _text(row.get("NOMBRE TIPO ESTABLECIMIENTO", "")))
    _set(values, "typology", _text(row.get("NOMBRE DE TIPOLOGIA", "")))
    _set(values, "postal_code", _digits(row.get("CODIGO POSTAL", ""), 5))
    _set(values, "street", _street(row))
    known, level = _level(row["NIVEL ATENCION"])
    if known:
        values["level_of_care"] = level
    _status(values, row["ESTATUS DE OPERACION"])
    record = UnitRecord(n, clues, values)
    _coordinates(record, row["LATITUD"], row["LONGITUD"])
    return record


def _parse_imb(ctx: _Context, n: int, row: Row) -> UnitRecord:
    clues = ctx.clues(row["CLUES_IMB"])
    values: dict[str, Any] = {
        "state_key": ctx.state_key_of(clues, row["CLAVE_DE_LA_ENTIDAD"], "clave_de_la_entidad")
    }
    _name(values, row["NOMBRE_DE_LA_UNIDAD"])
    _set(values, "municipality_key", _digits(row["CLAVE_DEL_MUNICIPIO"], 3))
    _set(values, "municipality_name", _text(row.get("MUNICIPIO", "")))
    _set(values, "locality_key", _digits(row.get("CLAVE_DE_LA_LOCALIDAD", ""), 4))
    _set(values, "locality_name", _text(row.get("LOCALIDAD", "")))
    _set(values, "typology", _text(row.get("NOMBRE_DE_TIPOLOGIA", "")))
    known, level = _level(row.get("NIVEL_ATENCION", ""))
    if known:
        values["level_of_care"] = level
    _status(values, row["ESTATUS_DE_OPERACION"])
    # The unit's key before it passed to IMSS-Bienestar (an SSA or state unit): one unit.
    previous = row.get("CLUES_SSA_Y_SME", "").strip()
    if previous:
        try:
            values["previous_clues"] = ctx.clues(previous)
        except RowError as exc:
            raise RowError(f"clues_ssa_y_sme: {exc}") from None
        if values["previous_clues"] == clues:
            raise RowError(f"clues_ssa_y_sme: es la misma clave {clues}")
        if values["previous_clues"][:2] != clues[:2]:  # a typo would hide an unrelated unit
            raise RowError(
                f"clues_ssa_y_sme: {values['previous_clues']} es de otra entidad que {clues}"
            )
    record = UnitRecord(n, clues, values)
    _coordinates(record, row["LATITUD"], row["LONGITUD"])
    return record


def _parse_other(ctx: _Context, n: int, row: Row) -> UnitRecord:
    clues = ctx.clues(row["CLUES"])
    ctx.same_institution(clues, row["INST_CODE"], "inst_code")
    ctx.same_state(clues, row["ENT"], "ent")
    state = ctx.states.by_code(clues[:2])
    assert state is not None
    values: dict[str, Any] = {"state_key": state.key}
    _name(values, row["NOMBRE"])
    _set(values, "institution_name", _text(row.get("INSTITUCION", "")))
    _set(values, "municipality_name", _text(row["MUNICIPIO"]))
    _set(values, "unit_type", _text(row.get("TIPO", "")))
    known, level = _level(row.get("NIVEL", ""))
    if known:
        values["level_of_care"] = level
    _status(values, row.get("ESTATUS", ""))
    record = UnitRecord(n, clues, values, as_of=as_of_from_vintage(row.get("VINTAGE", "")))
    _coordinates(record, row["LAT"], row["LNG"])
    return record


def _hours(row: Row, with_days: bool) -> dict[str, Any] | None:
    start, end = row["HORA INICIO"], row["HORA FIN"]
    if not start and not end:
        return None
    try:
        hours: dict[str, Any] = {"open": parse_time(start), "close": parse_time(end)}
    except ValueError as exc:
        raise RowError(f"HORA INICIO/HORA FIN: {exc}") from None
    if with_days:
        days: list[bool] = []
        for day in _DAYS:
            value = row[day].strip().upper()
            if value not in {"SI", "NO", "SÍ"}:
                raise RowError(f"{day}: se espera SI o NO, no {row[day]!r}")
            days.append(value != "NO")
        hours["days"] = days
        blocks = _digits(row.get("N_BLOQUES_HORARIO", ""), 3)
        hours["blocks"] = int(blocks) if blocks else None
    return hours


def _parse_national_hours(ctx: _Context, n: int, row: Row) -> UnitRecord:
    clues = ctx.clues(row["CLUES"])
    ctx.same_institution(clues, row["INST"], "INST")
    ctx.same_state(clues, row["ENT"], "ENT")
    return UnitRecord(n, clues, hours=_hours(row, with_days=True))


def _parse_hours(ctx: _Context, n: int, row: Row) -> UnitRecord:
    return UnitRecord(n, ctx.clues(row["CLUES"]), hours=_hours(row, with_days=False))


_PARSERS: dict[FileKind, Callable[[_Context, int, Row], UnitRecord]] = {
    FileKind.DGIS_MONTHLY: _parse_dgis,
    FileKind.IMSS_BIENESTAR: _parse_imb,
    FileKind.OTHER_INSTITUTIONS: _parse_other,
    FileKind.NATIONAL_HOURS: _parse_national_hours,
    FileKind.HOURS: _parse_hours,
}
_KEY_COLUMN = {FileKind.IMSS_BIENESTAR: "CLUES_IMB"}


def read_file(path: Path, states: StateTable, as_of: str | None = None) -> ParsedFile:
    """Parse a CLUES file of any known layout. `as_of` ("YYYY-MM") overrides the month of
    the data, otherwise taken from a YYYYMM in the file name (DGIS names its releases so).
    A file that cannot be read as a table (a damaged workbook, a CSV cell past the reader's
    limit) is an InvalidInput naming it."""
    try:
        return _read_file(path, states, as_of)
    except (csv.Error, zipfile.BadZipFile) as exc:
        raise InvalidInput.on("path", f"{path.name}: no se puede leer como tabla ({exc})") from None


def _read_file(path: Path, states: StateTable, as_of: str | None) -> ParsedFile:
    kind, header, rows, encoding = _open_table(path)
    parse = _PARSERS[kind]
    ctx = _Context(states)
    file_as_of = as_of or as_of_from_name(path)
    key_column = _KEY_COLUMN.get(kind, "CLUES")
    width = len(header)
    signature = next(columns for k, columns in _SIGNATURES if k is kind)
    needed = max(i for i, name in enumerate(header) if name in signature) + 1
    records: list[UnitRecord] = []
    rejections: list[Rejection] = []
    seen: dict[str, int] = {}
    read = 0
    for n, cells in rows:
        if not any(cells):
            continue
        read += 1
        # A CSV row wider than its header is a damaged row (an unquoted comma in a name
        # shifts every later cell): refused, not read askew; so is one cut before the columns
        # that identify its layout (key, name, status, coordinates…). Trailing empty cells
        # left out (a workbook, or a spreadsheet's CSV export, may drop them) are no damage.
        csv_file = encoding is not None
        short = len(cells) < needed
        long = len(cells) > width and (csv_file or any(c.strip() for c in cells[width:]))
        if short or long:
            at = header.index(key_column) if key_column in header else len(cells)
            raw_key = cells[at].strip().upper() if at < len(cells) else ""
            why = "¿una línea cortada?" if short else "¿una coma sin comillas en un campo?"
            reason = f"la fila tiene {len(cells)} columnas y el encabezado {width} ({why})"
            rejections.append(Rejection(n, raw_key, reason))
            continue
        cells = (cells + [""] * (width - len(cells)))[:width]
        row = dict(zip(header, cells, strict=True))
        raw_key = row.get(key_column, "").strip().upper()
        try:
            record = parse(ctx, n, row)
            _check_widths(record)
        except RowError as exc:
            rejections.append(Rejection(n, raw_key, str(exc)))
            continue
        first = seen.get(record.clues)
        if first is not None:
            rejections.append(
                Rejection(n, record.clues, f"clave CLUES repetida (ya aparece en la fila {first})")
            )
            continue
        seen[record.clues] = n
        if as_of or record.as_of is None:
            record.as_of = file_as_of
        records.append(record)
    return ParsedFile(path, kind, file_as_of, read, records, rejections, encoding)
