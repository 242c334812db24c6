"""Importing CLUES files into the catalog: merging each file into what the catalog holds.

A file updates only the fields it knows, and never with older data than what a field already
has (each field keeps the month of its source in `field_dates`), so the monthly releases and
the partial lists can be imported in any order, and again, without churning the history. A
unit whose values change gets a new version; the values it had go to health_unit_versions.

Apart from `service` (reads, search, history, nearest units) because it is a batch job with
rules of its own; `service` re-exports its public names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.config import get_settings
from salud.errors import InvalidInput
from salud.facilities import repository
from salud.facilities.gazetteer import EXACT, NONE, Gazetteer
from salud.facilities.importers import (
    KIND_LABELS,
    UNNAMED,
    FileKind,
    Rejection,
    UnitRecord,
    read_file,
)
from salud.facilities.repository import VALUE_COLUMNS
from salud.kit.clock import utcnow
from salud.kit.text import search_key
from salud.storage import locks

# Units per transaction: one SELECT, one executemany per kind of write.
BATCH_SIZE = 2000
# (what, done, total): "what" names the file being imported.
Progress = Callable[[str, int, int], None]

# The shared catalog in import order: older data first, hours last. Each file only fills what
# it knows; field dates keep a re-run from letting the older files undo the newer ones.
SHARED_FILES = (
    "ESTABLECIMIENTO_SALUD_202501_hidalgo_imb_sample.csv",
    "clues_other_institutions_7states.csv",
    "clues_imss_bienestar_202606.csv",
    "clues_horarios_202501.csv",
    "clues_national_horarios_202604.csv",
)


@dataclass(frozen=True, slots=True)
class CoordinateIssue:
    row: int
    clues: str
    latitude: float | None
    longitude: float | None
    # outside_mexico | far_from_seat | unreadable
    kind: str
    detail: str


@dataclass
class ImportReport:
    path: Path
    kind: FileKind
    as_of: str | None
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    placed_approximately: int = 0
    suspicious: list[CoordinateIssue] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.path.name} ({KIND_LABELS[self.kind]}): {self.read:,} filas leídas, "
            f"{self.created:,} unidades nuevas, {self.updated:,} actualizadas, "
            f"{self.unchanged:,} sin cambios, {len(self.rejected):,} rechazadas, "
            f"{self.placed_approximately:,} ubicadas aproximadamente, "
            f"{len(self.suspicious):,} coordenadas sospechosas ({self.seconds:.1f} s)"
        )


@dataclass
class CatalogImportReport:
    files: list[ImportReport]

    def __str__(self) -> str:
        created = sum(r.created for r in self.files)
        updated = sum(r.updated for r in self.files)
        rejected = sum(len(r.rejected) for r in self.files)
        seconds = sum(r.seconds for r in self.files)
        return (
            f"{len(self.files)} archivos: {created:,} unidades nuevas, {updated:,} actualizadas, "
            f"{rejected:,} filas rechazadas ({seconds:.1f} s)"
        )


@lru_cache(maxsize=4)
def _gazetteer(inegi_dir: Path) -> Gazetteer:
    return Gazetteer.load(inegi_dir)


def default_gazetteer() -> Gazetteer:
    inegi_dir = get_settings().shared_data_dir / "inegi"
    if not (inegi_dir / "estados_curp_inegi.csv").is_file():
        raise InvalidInput.on(
            "shared_data_dir",
            f"faltan los catálogos del INEGI (estados, municipios) en {inegi_dir}",
        )
    return _gazetteer(inegi_dir)


# --- import -------------------------------------------------------------------------------


def _new_unit(clues: str, gazetteer: Gazetteer) -> dict[str, Any]:
    state = gazetteer.states.by_code(clues[:2])
    unit: dict[str, Any] = dict.fromkeys(VALUE_COLUMNS)
    unit.update(
        clues=clues,
        name=UNNAMED,
        institution_code=clues[2:5],
        state_code=clues[:2],
        state_key=state.key if state else None,
        location_precision=NONE,
        field_dates={},
        version=0,
    )
    return unit


class _Merger:
    """Applies one file's records onto current rows, and tallies the report."""

    def __init__(self, report: ImportReport, gazetteer: Gazetteer, source: str, month: str) -> None:
        self.report = report
        self.gazetteer = gazetteer
        self.source = source
        self.month = month

    def merge(self, record: UnitRecord, current: dict[str, Any] | None) -> dict[str, Any]:
        unit = dict(current) if current is not None else _new_unit(record.clues, self.gazetteer)
        dates: dict[str, str] = dict(unit.get("field_dates") or {})
        unit["field_dates"] = dates
        as_of = record.as_of or self.month

        def newer(name: str) -> bool:
            known = dates.get(name)
            return known is None or as_of >= known

        def put(name: str, value: Any) -> None:
            if newer(name):
                unit[name] = value
                dates[name] = as_of

        for name, value in record.values.items():
            put(name, value)
        if "municipality_key" not in record.values and record.values.get("municipality_name"):
            key = self.gazetteer.municipality_key_by_name(
                unit["state_key"] or "", record.values["municipality_name"]
            )
            if key is not None:
                put("municipality_key", key)
        if record.has_location:
            self._locate(record, unit, newer("location"), as_of, dates)
        if record.hours is not None:
            self._hours(record.hours, unit, newer, dates, as_of)
        return unit

    def _locate(
        self,
        record: UnitRecord,
        unit: dict[str, Any],
        newer: bool,
        as_of: str,
        dates: dict[str, str],
    ) -> None:
        if record.unreadable_coordinates is not None:
            self.report.suspicious.append(
                CoordinateIssue(
                    record.row,
                    record.clues,
                    None,
                    None,
                    "unreadable",
                    f"coordenadas ilegibles: {record.unreadable_coordinates}",
                )
            )
        place = self.gazetteer.place(
            unit["state_key"], unit["municipality_key"], unit["locality_key"], record.coordinates
        )
        lat, lng = record.coordinates or (None, None)
        if place.outside_mexico:
            self.report.suspicious.append(
                CoordinateIssue(
                    record.row,
                    record.clues,
                    lat,
                    lng,
                    "outside_mexico",
                    f"coordenadas fuera de México ({lat}, {lng}), no usadas",
                )
            )
        elif place.far_from_seat_km is not None:
            self.report.suspicious.append(
                CoordinateIssue(
                    record.row, record.clues, lat, lng, "far_from_seat", place.note or ""
                )
            )
        current_exact = unit["location_precision"] == EXACT
        if place.precision == EXACT:
            # Exact coordinates win over approximate ones, and newer over older.
            if not current_exact or newer:
                dates["location"] = as_of
            else:
                return
        elif current_exact or (place.precision == NONE and unit["location_precision"] != NONE):
            return  # never trade a better location for a worse one
        unit["latitude"], unit["longitude"] = place.latitude, place.longitude
        unit["location_precision"], unit["location_note"] = place.precision, place.note
        if place.approximate:
            self.report.placed_approximately += 1

    @staticmethod
    def _hours(
        given: dict[str, Any],
        unit: dict[str, Any],
        newer: Callable[[str], bool],
        dates: dict[str, str],
        as_of: str,
    ) -> None:
        hours = dict(unit["hours"] or {"days": None, "open": None, "close": None, "blocks": None})
        if "open" in given and newer("hours"):
            hours["open"], hours["close"] = given["open"], given["close"]
            hours["blocks"] = given.get("blocks")
            dates["hours"] = as_of
        if "days" in given and newer("hours_days"):
            hours["days"] = given["days"]
            dates["hours_days"] = as_of
        unit["hours"] = hours


def _snapshot(unit: dict[str, Any]) -> dict[str, Any]:
    values = {name: unit[name] for name in VALUE_COLUMNS}
    values["updated_at"] = unit["updated_at"].isoformat()
    return values


async def _persist_batch(
    sessions: async_sessionmaker[AsyncSession], records: list[UnitRecord], merger: _Merger
) -> None:
    report = merger.report
    async with sessions() as session, session.begin():
        # Two imports at once (a scheduled one and an operator's) take turns batch by batch:
        # each reads the units as the other left them (no lost update, no version twice).
        await locks.hold(session, "facilities:catalog-import", "health_units", "clues")
        now = utcnow()  # after the wait: the catalog's latest change stays the latest written
        current = await repository.fetch_for_merge(session, [r.clues for r in records])
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        dated: list[dict[str, Any]] = []
        versions: list[dict[str, Any]] = []
        for record in records:
            old = current.get(record.clues)
            unit = merger.merge(record, old)
            if old is None:
                unit.update(
                    name_key=search_key(unit["name"]),
                    source=merger.source,
                    version=1,
                    updated_at=now,
                )
                inserts.append(unit)
                report.created += 1
            elif any(unit[name] != old[name] for name in VALUE_COLUMNS):
                versions.append(
                    {
                        "clues": record.clues,
                        "version": old["version"],
                        "snapshot": _snapshot(old),
                        "source": old["source"],
                        "recorded_at": now,
                    }
                )
                unit.update(
                    name_key=search_key(unit["name"]),
                    source=merger.source,
                    version=old["version"] + 1,
                    updated_at=now,
                )
                updates.append(unit)
                report.updated += 1
            else:
                report.unchanged += 1
                if unit["field_dates"] != (old["field_dates"] or {}):
                    # Same values, confirmed by newer data: only the field dates move.
                    dated.append({"clues": record.clues, "field_dates": unit["field_dates"]})
        await repository.insert_units(session, inserts)
        await repository.update_units(session, [_update_row(u) for u in updates])
        await repository.update_units(session, dated)
        await repository.insert_versions(session, versions)


def _update_row(unit: dict[str, Any]) -> dict[str, Any]:
    return {
        "clues": unit["clues"],
        **{name: unit[name] for name in VALUE_COLUMNS},
        "name_key": unit["name_key"],
        "field_dates": unit["field_dates"],
        "source": unit["source"],
        "version": unit["version"],
        "updated_at": unit["updated_at"],
    }


async def import_file(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    progress: Progress | None = None,
    gazetteer: Gazetteer | None = None,
    as_of: str | None = None,
) -> ImportReport:
    """Import one CLUES file of any known layout; each batch of units is one transaction.

    `as_of` ("YYYY-MM") is the month the data describes when the file name does not say.
    """
    started = time.perf_counter()
    if as_of is not None and not _is_month(as_of):
        raise InvalidInput.on("as_of", "se espera un mes AAAA-MM")
    gazetteer = gazetteer or default_gazetteer()
    parsed = read_file(path, gazetteer.states, as_of)
    report = ImportReport(path, parsed.kind, parsed.as_of, read=parsed.rows_read)
    report.rejected.extend(parsed.rejections)
    # Data that neither the file's name, its rows nor --as-of date counts as the oldest: it
    # fills what nothing dated says, and never overrides a dated release (stamped with the
    # month of the import, an old extract froze every later official file).
    merger = _Merger(report, gazetteer, path.name[:80], UNDATED)
    total = len(parsed.records)
    if progress:
        progress(path.name, 0, total)
    for start in range(0, total, BATCH_SIZE):
        await _persist_batch(sessions, parsed.records[start : start + BATCH_SIZE], merger)
        if progress:
            progress(path.name, min(start + BATCH_SIZE, total), total)
    report.seconds = time.perf_counter() - started
    return report


UNDATED = "0000-00"  # sorts before every month
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def _is_month(text: str) -> bool:
    """YYYY-MM with both digits of the month: months are compared as text, so "2025-1"
    would sort after "2025-06"."""
    return _MONTH.fullmatch(text) is not None and text[:4] != "0000"


async def import_shared_catalog(
    sessions: async_sessionmaker[AsyncSession],
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> CatalogImportReport:
    """Import the five shared CLUES files (../shared/data/clues), older data first, hours last."""
    data_dir = data_dir or get_settings().shared_data_dir
    gazetteer = _gazetteer(data_dir / "inegi")
    missing = [name for name in SHARED_FILES if not (data_dir / "clues" / name).is_file()]
    if missing:
        raise InvalidInput.on(
            "data_dir", f"faltan archivos en {data_dir / 'clues'}: {', '.join(missing)}"
        )
    reports = [
        await import_file(
            sessions, data_dir / "clues" / name, progress=progress, gazetteer=gazetteer
        )
        for name in SHARED_FILES
    ]
    return CatalogImportReport(reports)
