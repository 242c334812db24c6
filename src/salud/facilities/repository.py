"""All SQL of the health-unit catalog. Bulk paths use executemany, never per-row ORM flushes."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from salud.facilities.models import HealthUnit, HealthUnitVersion

# The values of a unit: what the history keeps and what a change is measured on.
VALUE_COLUMNS: tuple[str, ...] = (
    "name",
    "institution_code",
    "institution_name",
    "state_code",
    "state_key",
    "municipality_key",
    "municipality_name",
    "locality_key",
    "locality_name",
    "unit_type",
    "typology",
    "level_of_care",
    "status",
    "in_operation",
    "street",
    "postal_code",
    "latitude",
    "longitude",
    "location_precision",
    "location_note",
    "hours",
    "previous_clues",
)
_MERGE_COLUMNS = (*VALUE_COLUMNS, "source", "field_dates", "version", "updated_at")
# Keys per IN (...) query: far below SQLite's and PostgreSQL's bound-parameter limits.
_IN_CHUNK = 2000


def current() -> ColumnElement[bool]:
    """Units no other unit names as its previous key: an SSA unit that passed to IMSS-Bienestar
    under a new key is listed once, under the new one (its old key still reads, and says
    which unit it became)."""
    successor = aliased(HealthUnit)
    return ~exists().where(successor.previous_clues == HealthUnit.clues)


async def successor_of(session: AsyncSession, clues: str) -> str | None:
    """The key of the unit that took over this one, if any."""
    found = await session.scalar(
        select(HealthUnit.clues).where(HealthUnit.previous_clues == clues).limit(1)
    )
    return found


async def fetch_for_merge(session: AsyncSession, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The current values of the units with these keys (absent keys are new units)."""
    table = HealthUnit.__table__
    columns = [table.c.clues, *(table.c[name] for name in _MERGE_COLUMNS)]
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        result = await session.execute(select(*columns).where(table.c.clues.in_(chunk)))
        for row in result.mappings():
            found[row["clues"]] = dict(row)
    return found


async def insert_units(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(HealthUnit), rows)


async def update_units(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Bulk UPDATE by primary key (one executemany); each row carries `clues`."""
    if rows:
        await session.execute(update(HealthUnit), rows)


async def insert_versions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(HealthUnitVersion), rows)


async def get(session: AsyncSession, clues: str) -> HealthUnit | None:
    return await session.get(HealthUnit, clues)


async def has_institution(session: AsyncSession, code: str) -> bool:
    """Whether any unit of the catalog belongs to this CLUES institution code."""
    found = await session.scalar(
        select(HealthUnit.clues).where(HealthUnit.institution_code == code).limit(1)
    )
    return found is not None


async def search(
    session: AsyncSession,
    *,
    state_code: str | None,
    institution_code: str | None,
    name_key: str | None,
    limit: int,
    offset: int,
) -> tuple[list[HealthUnit], int]:
    conditions = [current()]
    if state_code:
        conditions.append(HealthUnit.state_code == state_code)
    if institution_code:
        conditions.append(HealthUnit.institution_code == institution_code)
    if name_key:
        # name_key holds letters and spaces only, so it carries no LIKE wildcards.
        conditions.append(HealthUnit.name_key.contains(name_key))
    total = (
        await session.execute(select(func.count()).select_from(HealthUnit).where(*conditions))
    ).scalar_one()
    query = (
        select(HealthUnit).where(*conditions).order_by(HealthUnit.clues).limit(limit).offset(offset)
    )
    units = list((await session.execute(query)).scalars())
    return units, total


async def find(
    session: AsyncSession,
    *,
    clues: Collection[str] | None = None,
    state_codes: Collection[str] | None = None,
    institution_codes: Collection[str] | None = None,
    name_key: str | None = None,
    name_prefix: bool = False,
    in_operation: bool | None = None,
    limit: int,
    offset: int,
) -> tuple[list[HealthUnit], int]:
    """Units matching every given filter (a collection: any of its values), by CLUES key;
    the FHIR Location search. `name_key` is a folded name: the start of the unit's name
    (`name_prefix`) or any part of it."""
    # Asked by key, a unit is found under either key; listed, under its current one only.
    conditions: list[ColumnElement[bool]] = [] if clues is not None else [current()]
    for column, values in (
        (HealthUnit.clues, clues),
        (HealthUnit.state_code, state_codes),
        (HealthUnit.institution_code, institution_codes),
    ):
        if values is not None:
            conditions.append(column.in_(sorted(values)))
    if name_key:  # letters and spaces only: no LIKE wildcards to escape
        key = HealthUnit.name_key
        conditions.append(key.startswith(name_key) if name_prefix else key.contains(name_key))
    if in_operation is not None:
        conditions.append(HealthUnit.in_operation.is_(in_operation))
    total = await session.scalar(select(func.count()).select_from(HealthUnit).where(*conditions))
    query = (
        select(HealthUnit).where(*conditions).order_by(HealthUnit.clues).limit(limit).offset(offset)
    )
    return list((await session.execute(query)).scalars()), int(total or 0)


async def existing(session: AsyncSession, keys: Collection[str]) -> set[str]:
    """Which of these CLUES keys are units of the catalog."""
    found = await session.scalars(
        select(HealthUnit.clues).where(HealthUnit.clues.in_(sorted(keys)))
    )
    return set(found)


async def versions(session: AsyncSession, clues: str) -> list[HealthUnitVersion]:
    query = (
        select(HealthUnitVersion)
        .where(HealthUnitVersion.clues == clues)
        .order_by(HealthUnitVersion.version.desc(), HealthUnitVersion.id.desc())
    )
    return list((await session.execute(query)).scalars())


async def index_rows(session: AsyncSession) -> list[dict[str, Any]]:
    """What the nearest-unit index needs, for every current unit that has a place on the map
    (one that passed to another key is there once, under the new key)."""
    table = HealthUnit.__table__
    columns = [
        table.c[name]
        for name in (
            "clues",
            "name",
            "institution_code",
            "state_code",
            "state_key",
            "municipality_key",
            "level_of_care",
            "in_operation",
            "latitude",
            "longitude",
            "location_precision",
            "hours",
            "unit_type",
            "typology",
        )
    ]
    result = await session.execute(
        select(*columns).where(
            table.c.latitude.is_not(None), table.c.longitude.is_not(None), current()
        )
    )
    return [dict(row) for row in result.mappings()]


async def fingerprint(session: AsyncSession) -> tuple[int, datetime | None]:
    """Cheap "has the catalog changed?": the count and the latest change."""
    row = (await session.execute(select(func.count(), func.max(HealthUnit.updated_at)))).one()
    return int(row[0]), row[1]
