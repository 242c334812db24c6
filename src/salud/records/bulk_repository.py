"""The SQL of the bulk paths (NDJSON import, $export), beside repository.py and on the same
tables: the current row, the earlier version, the token, reference and date index rows.

On PostgreSQL new rows go in with COPY (asyncpg `copy_records_to_table`) with their keys
drawn from the sequence first, so that their index rows can be written in the same way;
elsewhere with executemany. Per-row INSERTs through the ORM are 10–50x slower than COPY
(GUIDE.md). Nothing here commits: the caller's transaction is the chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from salud.identity.models import Affiliation, Person
from salud.kit.clock import MEXICO_CITY
from salud.records import repository
from salud.records.indexing import Index
from salud.records.models import (
    FhirResource,
    FhirResourceVersion,
    RecordRestriction,
)
from salud.storage.engine import dialect_name

# The columns of a version row, in the order of `Row.values()`.
COLUMNS = (
    "resource_type", "fhir_id", "version_id", "last_updated", "deleted", "person_curp",
    "institution_code", "clues", "author", "sensitivity", "content",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Existing:
    pk: int
    version_id: int
    deleted: bool
    person_curp: str | None
    content: str
    sensitivity: str | None  # the categories of the current version (records/sensitivity.py)
    institution_code: int | None  # who wrote the current version
    author: str | None


async def _asyncpg(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, inside its transaction."""
    conn = await session.connection()
    await conn.exec_driver_sql("SELECT 1")  # the adapter begins its transaction lazily
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def begin_chunk(session: AsyncSession) -> None:
    """PostgreSQL: plan this transaction's statements for the table as it is now. The same
    statement runs for every chunk while the tables grow from empty; a plan cached while they
    were empty (a scan of every row of a type instead of the (type, id) index) made each
    chunk slower than the last (measured: 190,000 resources in 4 minutes)."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    else:  # SQLite: the chunk is the only writer from its first read to its commit
        await repository.take_sqlite_write_lock(session)


async def lock_versions(session: AsyncSession, pks: Sequence[int]) -> dict[int, int]:
    """Lock these current rows until the chunk commits (in key order, so that two writers
    locking several never wait on each other in a cycle); their versions as now locked."""
    if not pks:
        return {}
    if dialect_name(session) == "postgresql":
        raw = await _asyncpg(session)
        rows = await raw.fetch(
            "SELECT id, version_id FROM fhir_resources WHERE id = ANY($1::bigint[]) "
            "ORDER BY id FOR UPDATE",
            list(pks),
        )
        return {r[0]: r[1] for r in rows}
    found: dict[int, int] = {}
    for part in repository.in_slices(pks):
        stmt = select(FhirResource.id, FhirResource.version_id).where(FhirResource.id.in_(part))
        found.update({pk: v for pk, v in (await session.execute(stmt)).all()})
    return found


async def existing(
    session: AsyncSession, wanted: dict[str, list[str]]
) -> dict[tuple[str, str], Existing]:
    """The current rows of these (type -> ids), one indexed query per type."""
    found: dict[tuple[str, str], Existing] = {}
    if dialect_name(session) == "postgresql":  # one array parameter, not thousands
        raw = await _asyncpg(session)
        for kind, ids in wanted.items():
            rows = await raw.fetch(
                "SELECT fhir_id, id, version_id, deleted, person_curp, content, sensitivity, "
                "institution_code, author FROM fhir_resources "
                "WHERE resource_type = $1 AND fhir_id = ANY($2::varchar[])",
                kind, ids,
            )  # fmt: skip
            for r in rows:
                found[(kind, r[0])] = Existing(*r[1:])
        return found
    for kind, ids in wanted.items():
        for part in repository.in_slices(ids):
            stmt = select(
                FhirResource.fhir_id, FhirResource.id, FhirResource.version_id,
                FhirResource.deleted, FhirResource.person_curp, FhirResource.content,
                FhirResource.sensitivity, FhirResource.institution_code, FhirResource.author,
            ).where(FhirResource.resource_type == kind, FhirResource.fhir_id.in_(part))  # fmt: skip
            for r in (await session.execute(stmt)).all():
                found[(kind, r[0])] = Existing(*r[1:])
    return found


async def imported_versions(
    session: AsyncSession, wanted: dict[str, list[str]], prefix: str
) -> dict[tuple[str, str], list[str]]:
    """For these (type -> ids), the contents of the earlier versions imports wrote (author
    starting with `prefix`), where there are some. Few rows: only resources changed through
    the API since, among a chunk's."""
    found: dict[tuple[str, str], list[str]] = {}
    v = FhirResourceVersion
    for kind, ids in wanted.items():
        for part in repository.in_slices(ids):
            stmt = select(v.fhir_id, v.content).where(
                v.resource_type == kind, v.fhir_id.in_(part), v.author.startswith(prefix)
            )
            for fhir_id, content in (await session.execute(stmt)).all():
                found.setdefault((kind, fhir_id), []).append(content)
    return found


async def restrictions_for(session: AsyncSession, curps: Sequence[str]) -> dict[str, set[str]]:
    """The categories each of these persons restricted to the recording institution (one
    query per slice of persons, not one per person)."""
    out: dict[str, set[str]] = {}
    for part in repository.in_slices(curps):
        stmt = select(RecordRestriction.person_curp, RecordRestriction.category).where(
            RecordRestriction.person_curp.in_(part)
        )
        for curp, category in (await session.execute(stmt)).all():
            out.setdefault(curp, set()).add(category)
    return out


async def insert_new(session: AsyncSession, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Insert current rows (tuples in COLUMNS order); their keys, in the same order."""
    if not rows:
        return []
    if dialect_name(session) == "postgresql":
        raw = await _asyncpg(session)
        # A chunk's commit need not wait for the WAL flush: re-running the import restores
        # what a server crash right after it would lose (the import is idempotent by id).
        await raw.execute("SET LOCAL synchronous_commit TO OFF")
        keys = [
            r[0]
            for r in await raw.fetch(
                "SELECT nextval(pg_get_serial_sequence('fhir_resources', 'id')) "
                "FROM generate_series(1, $1)",
                len(rows),
            )
        ]
        await raw.copy_records_to_table(
            "fhir_resources",
            records=[(k, *r) for k, r in zip(keys, rows, strict=True)],
            columns=["id", *COLUMNS],
        )
        return keys
    await session.execute(insert(FhirResource), [dict(zip(COLUMNS, r, strict=True)) for r in rows])
    by_key: dict[tuple[str, str], int] = {}
    kinds: dict[str, list[str]] = {}
    for r in rows:
        kinds.setdefault(r[0], []).append(r[1])
    for kind, ids in kinds.items():
        for start in range(0, len(ids), 500):
            stmt = select(FhirResource.fhir_id, FhirResource.id).where(
                FhirResource.resource_type == kind,
                FhirResource.fhir_id.in_(ids[start : start + 500]),
            )
            by_key.update({(kind, i): pk for i, pk in (await session.execute(stmt)).all()})
    return [by_key[(r[0], r[1])] for r in rows]


async def replace(session: AsyncSession, changed: Sequence[tuple[int, tuple[Any, ...]]]) -> None:
    """New versions of existing resources: (key, row in COLUMNS order). The current rows are
    first copied into fhir_resource_versions, as an interactive update does."""
    if not changed:
        return
    pks = [pk for pk, _ in changed]
    for part in repository.in_slices(pks):
        columns = (getattr(FhirResource, c) for c in COLUMNS)
        source = select(*columns).where(FhirResource.id.in_(part))
        await session.execute(insert(FhirResourceVersion).from_select(list(COLUMNS), source))
    await session.execute(  # ORM bulk UPDATE by primary key: one executemany
        update(FhirResource),
        [{"id": pk, **dict(zip(COLUMNS, row, strict=True))} for pk, row in changed],
    )
    await repository.delete_indexes(session, pks)


async def insert_index(session: AsyncSession, indexes: Sequence[tuple[int, Index]]) -> None:
    """The token, reference and date rows of these resources (key, Index)."""
    if dialect_name(session) != "postgresql":
        await repository.write_indexes(session, indexes)
        return
    raw = await _asyncpg(session)
    for table, rows in repository.index_rows(indexes).items():
        if rows:
            columns = list(repository.INDEX_COLUMNS[table])
            await raw.copy_records_to_table(table, records=rows, columns=columns)


# --- $export ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """Which registry persons an export takes: changed up to `until` (and after `since`).
    `coverage`: the export carries Coverages, which also change by time alone (an active
    affiliation past its end is cancelled the next day, records/mirror.py), so a person
    whose affiliation ended in the window is taken too."""

    since: datetime | None
    until: datetime
    coverage: bool


def _registry(window: Window) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Person.updated_at <= window.until]
    if window.since is None:
        return conditions
    changed: ColumnElement[bool] = Person.updated_at > window.since
    if window.coverage:  # the day after valid_to began in (since, until], in Mexico's time
        first = window.since.astimezone(MEXICO_CITY).date()
        last = window.until.astimezone(MEXICO_CITY).date()
        ended = (
            select(Affiliation.id)
            .where(
                Affiliation.person_id == Person.id,
                Affiliation.status == "active",
                Affiliation.valid_to >= first,
                Affiliation.valid_to < last,
            )
            .exists()
        )
        changed = or_(changed, ended)
    return [*conditions, changed]


async def page_end(
    session: AsyncSession, after: str, limit: int, window: Window | None
) -> str | None:
    """Where an export's page that starts after `after` ends: the `limit`-th registry person
    (taken by `window`; none when None) or the `limit`-th person with a record in the store
    after it, whichever comes first; None when neither has that many left (the last page).
    Compared by the database, in the order its keyset conditions use: under a collation
    other than code-point order (es-MX, say) a boundary chosen by Python's comparison would
    repeat or skip persons. (`COLLATE "C"` instead would lose the indexes on both keys.)"""
    nth: list[Any] = [
        select(FhirResource.person_curp)
        .where(FhirResource.person_curp.is_not(None), FhirResource.person_curp > after)
        .group_by(FhirResource.person_curp)
        .order_by(FhirResource.person_curp)
        .offset(limit - 1)
        .limit(1)
        .scalar_subquery()
    ]
    if window is not None:
        nth.append(
            select(Person.curp)
            .where(Person.curp > after, *_registry(window))
            .order_by(Person.curp)
            .offset(limit - 1)
            .limit(1)
            .scalar_subquery()
        )
    ends = union_all(*(select(n.label("k")) for n in nth)).subquery()
    found: str | None = await session.scalar(select(func.min(ends.c.k)))
    return found


async def persons_page(
    session: AsyncSession, after: str, upto: str | None, window: Window
) -> list[Person]:
    """The registry persons in (after, upto] taken by `window` (keyset paging by CURP)."""
    stmt = (
        select(Person)
        .options(selectinload(Person.affiliations))  # their Coverage (records/mirror.py)
        .where(*_persons(Person.curp, after, upto, None), *_registry(window))
    )
    return list(await session.scalars(stmt.order_by(Person.curp)))


def _persons(column: Any, after: str, upto: str | None, only: str | None) -> list[Any]:
    if only is not None:
        return [column == only]
    return [column > after] + ([column <= upto] if upto is not None else [])


async def record_rows(
    session: AsyncSession,
    kinds: Sequence[str],
    since: datetime | None,
    until: datetime,
    *,
    after: str = "",
    upto: str | None = None,
    only: str | None = None,
    nobody: bool = False,
) -> AsyncIterator[tuple[str, str, str | None, int | None, str, str]]:
    """(type, person, sensitivity, institution, id, content) of the live resources of these
    types, of the persons in (after, upto] (or `only` one; or, `nobody`, those in no
    person's record, with person ""), written in the window; by person, then type."""
    owners = (
        [FhirResource.person_curp.is_(None)]
        if nobody
        else _persons(FhirResource.person_curp, after, upto, only)
    )
    conditions = [
        *owners,
        FhirResource.resource_type.in_(kinds),
        FhirResource.deleted.is_(False),
        FhirResource.last_updated <= until,
    ]
    if since is not None:
        conditions.append(FhirResource.last_updated > since)
    stmt = (
        select(
            FhirResource.resource_type, FhirResource.person_curp, FhirResource.sensitivity,
            FhirResource.institution_code, FhirResource.fhir_id, FhirResource.content,
        )
        .where(and_(*conditions))
        .order_by(FhirResource.person_curp, FhirResource.resource_type, FhirResource.id)
    )  # fmt: skip
    result = await session.stream(stmt.execution_options(yield_per=1000))
    async for row in result:
        yield row[0], row[1] or "", row[2], row[3], row[4], row[5]


async def restrictions_of(
    session: AsyncSession, after: str = "", upto: str | None = None, only: str | None = None
) -> dict[str, set[str]]:
    """The categories each person in (after, upto] (or `only` one) restricted to the
    recording institution."""
    stmt = select(RecordRestriction.person_curp, RecordRestriction.category).where(
        *_persons(RecordRestriction.person_curp, after, upto, only)
    )
    out: dict[str, set[str]] = {}
    for curp, category in (await session.execute(stmt)).all():
        out.setdefault(curp, set()).add(category)
    return out


STATISTICS_TABLES = ("fhir_resources", "fhir_tokens", "fhir_references", "fhir_dates")


async def refresh_statistics(session: AsyncSession) -> None:
    """ANALYZE the store's tables (PostgreSQL and SQLite both take `ANALYZE table`)."""
    for table in STATISTICS_TABLES:
        await session.execute(text(f"ANALYZE {table}"))
