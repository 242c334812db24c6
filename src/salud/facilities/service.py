"""Use cases of the CLUES catalog: read, search, history, nearest units.

Importing files into the catalog is in `catalog_import`; its public names (`import_file`,
`import_shared_catalog`, the reports) are re-exported here for the CLI, API and tests.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from salud.config import get_settings
from salud.errors import InvalidInput, NotFound
from salud.facilities import repository
from salud.facilities.catalog_import import (
    BATCH_SIZE,
    SHARED_FILES,
    CatalogImportReport,
    CoordinateIssue,
    ImportReport,
    Progress,
    default_gazetteer,
    import_file,
    import_shared_catalog,
)
from salud.facilities.hours import is_open, zone_for_unit
from salud.facilities.importers import CLUES_FORMAT, CLUES_RE
from salud.facilities.institutions import INSTITUTIONS, institution_name
from salud.facilities.models import HealthUnit, HealthUnitVersion
from salud.facilities.nearest import MAX_K, IndexCache
from salud.facilities.schemas import (
    HealthUnitHistory,
    HealthUnitPage,
    HealthUnitRead,
    HealthUnitVersionRead,
    Hours,
    NearestResults,
    NearestUnit,
)
from salud.kit.clock import utcnow
from salud.kit.text import search_key

# The public names, and those of catalog_import that the CLI, API and tests import from here.
__all__ = [
    "BATCH_SIZE",
    "SHARED_FILES",
    "CatalogImportReport",
    "CoordinateIssue",
    "ImportReport",
    "NearestQuery",
    "Progress",
    "address_point",
    "check_clues",
    "default_gazetteer",
    "get_unit",
    "import_file",
    "import_shared_catalog",
    "nearest",
    "nearest_query",
    "search_units",
    "unit_history",
    "unit_read",
]

# --- reading ------------------------------------------------------------------------------


def check_clues(clues: str, field_name: str = "clues") -> str:
    key = clues.strip().upper()
    if not CLUES_RE.match(key):
        raise InvalidInput.on(field_name, f"clave CLUES mal formada: se esperan {CLUES_FORMAT}")
    return key


def _institution(code: str, stored: str | None) -> str:
    return institution_name(code) or stored or code


def _zone_of(unit: HealthUnit) -> ZoneInfo:
    return zone_for_unit(unit.state_code, unit.state_key, unit.municipality_key)


def unit_read(unit: HealthUnit, at: datetime | None = None) -> HealthUnitRead:
    hours = Hours.model_validate(unit.hours) if unit.hours else None
    return HealthUnitRead(
        clues=unit.clues,
        name=unit.name,
        institution_code=unit.institution_code,
        institution=_institution(unit.institution_code, unit.institution_name),
        state_code=unit.state_code,
        state_key=unit.state_key,
        municipality_key=unit.municipality_key,
        municipality_name=unit.municipality_name,
        locality_key=unit.locality_key,
        locality_name=unit.locality_name,
        unit_type=unit.unit_type,
        typology=unit.typology,
        level_of_care=unit.level_of_care,
        status=unit.status,
        in_operation=unit.in_operation,
        street=unit.street,
        postal_code=unit.postal_code,
        latitude=unit.latitude,
        longitude=unit.longitude,
        location_precision=unit.location_precision,
        location_note=unit.location_note,
        hours=hours,
        open_now=is_open(unit.hours, at or utcnow(), _zone_of(unit)),
        previous_clues=unit.previous_clues,
        source=unit.source,
        version=unit.version,
        updated_at=unit.updated_at,
    )


async def get_unit(session: AsyncSession, clues: str) -> HealthUnitRead:
    key = check_clues(clues)
    unit = await repository.get(session, key)
    if unit is None:
        raise NotFound(f"No hay una unidad con la clave CLUES {key} en el catálogo")
    found = unit_read(unit)
    found.replaced_by = await repository.successor_of(session, key)
    return found


async def unit_successors(session: AsyncSession, keys: Collection[str]) -> Mapping[str, str | None]:
    """identity.service.UnitLookup over the catalog: each key that is a unit, with the key of
    the unit that took it over (None while current); keys that name no unit are left out. A
    module-level function: a bulk import's worker processes receive it by reference."""
    found: dict[str, str | None] = {}
    for key in keys:
        try:
            unit = await get_unit(session, key)
        except NotFound:
            continue
        found[key] = unit.replaced_by
    return found


async def unit_history(session: AsyncSession, clues: str) -> HealthUnitHistory:
    current = await get_unit(session, clues)
    rows: list[HealthUnitVersion] = await repository.versions(session, current.clues)
    return HealthUnitHistory(
        clues=current.clues,
        current=current,
        versions=[
            HealthUnitVersionRead(
                version=v.version, source=v.source, recorded_at=v.recorded_at, values=v.snapshot
            )
            for v in rows
        ],
    )


async def search_units(
    session: AsyncSession,
    *,
    state: str | None = None,
    institution: str | None = None,
    name: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> HealthUnitPage:
    max_page = get_settings().max_page_size
    if not 1 <= limit <= max_page:
        raise InvalidInput.on("limit", f"debe estar entre 1 y {max_page}")
    if not 0 <= offset <= 1_000_000:
        raise InvalidInput.on("offset", "debe estar entre 0 y 1,000,000")
    state_code = state.strip().upper() if state else None
    if state_code is not None and (len(state_code) != 2 or not state_code.isalpha()):
        raise InvalidInput.on("state", "se esperan las 2 letras del estado en la CLUES (HG, DF...)")
    institution_code = _institution_code(institution, "institution") if institution else None
    if institution_code is not None and not await _known_institution(session, institution_code):
        raise _unknown_institution(institution_code)
    name_key = search_key(name) if name else None
    if name is not None and name.strip() and not name_key:
        raise InvalidInput.on("name", "escriba al menos una letra del nombre")
    units, total = await repository.search(
        session,
        state_code=state_code,
        institution_code=institution_code,
        name_key=name_key or None,
        limit=limit,
        offset=offset,
    )
    now = utcnow()
    return HealthUnitPage(
        items=[unit_read(u, now) for u in units], total=total, limit=limit, offset=offset
    )


def _institution_code(code: str, field_name: str) -> str:
    value = code.strip().upper()
    if len(value) != 3 or not value.isalpha():
        raise InvalidInput.on(
            field_name, f"clave de institución CLUES inválida: {code!r} (3 letras: IMB, IMS...)"
        )
    return value


def address_point(
    state_key: str, municipality_key: str | None, locality_key: str | None
) -> tuple[float, float, str] | None:
    """Where an address known by INEGI keys lies (locality or municipal seat), or None."""
    if municipality_key is None:
        return None
    return default_gazetteer().point(state_key, municipality_key, locality_key)


@dataclass(frozen=True)
class NearestQuery:
    latitude: float
    longitude: float
    k: int = 5
    max_km: float | None = None
    institutions: frozenset[str] | None = None
    level: int | None = None
    in_operation: bool | None = True
    open_now: bool = False
    at: datetime | None = None


def nearest_query(
    lat: float,
    lng: float,
    *,
    k: int = 5,
    max_km: float | None = None,
    institutions: Iterable[str] | None = None,
    level: int | None = None,
    in_operation: bool | None = True,
    open_now: bool = False,
    at: datetime | None = None,
) -> NearestQuery:
    """Validate a nearest-unit question; every bad value is named with its reason."""
    if not -90.0 <= lat <= 90.0:
        raise InvalidInput.on("lat", "la latitud debe estar entre -90 y 90")
    if not -180.0 <= lng <= 180.0:
        raise InvalidInput.on("lng", "la longitud debe estar entre -180 y 180")
    if not 1 <= k <= MAX_K:
        raise InvalidInput.on("k", f"debe estar entre 1 y {MAX_K}")
    if max_km is not None and not 0 < max_km <= 5000:
        raise InvalidInput.on("max_km", "debe ser mayor que 0 y a lo más 5000 km")
    if level is not None and level not in (1, 2, 3):
        raise InvalidInput.on("level", "el nivel de atención es 1, 2 o 3")
    if at is not None and at.tzinfo is None:
        raise InvalidInput.on("at", "se requiere fecha y hora con zona horaria")
    codes = (
        frozenset(_institution_code(c, "institution") for c in institutions)
        if institutions
        else None
    )
    return NearestQuery(lat, lng, k, max_km, codes, level, in_operation, open_now, at)


def _unknown_institution(code: str) -> InvalidInput:
    return InvalidInput.on(
        "institution", f"{code} no es una institución del catálogo CLUES (IMB, IMS, IST, SSA…)"
    )


async def _known_institution(session: AsyncSession, code: str) -> bool:
    """A code of the institutions this system names, or one that some unit of the catalog
    carries (the CLUES adds institutions now and then): anything else would answer an empty
    list as if the institution had no units."""
    return code in INSTITUTIONS or await repository.has_institution(session, code)


async def nearest(session: AsyncSession, query: NearestQuery, cache: IndexCache) -> NearestResults:
    index = await cache.get(session)
    for code in sorted(query.institutions or ()):
        if code not in index.institutions and not await _known_institution(session, code):
            raise _unknown_institution(code)
    hits = index.query(
        query.latitude,
        query.longitude,
        query.k,
        max_km=query.max_km,
        institutions=query.institutions,
        level=query.level,
        in_operation=query.in_operation,
        open_now=query.open_now,
        at=query.at,
    )
    return NearestResults(
        latitude=query.latitude,
        longitude=query.longitude,
        items=[
            NearestUnit(
                clues=h.clues,
                name=h.name,
                institution_code=h.institution_code,
                institution=_institution(h.institution_code, None),
                level_of_care=h.level_of_care,
                distance_km=h.distance_km,
                latitude=h.latitude,
                longitude=h.longitude,
                location_precision=h.location_precision,
                open_now=h.open_now,
            )
            for h in hits
        ],
    )
