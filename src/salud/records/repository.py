"""All SQL of the FHIR store. Nothing here commits; callers pass their session."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    String,
    and_,
    bindparam,
    column,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import care
from salud.access.principal import Principal
from salud.records.compartment import PATIENT_COMPARTMENT
from salud.records.indexing import MAX_CODE, Index, SortKey
from salud.records.models import (
    FhirDate,
    FhirReference,
    FhirResource,
    FhirResourceVersion,
    FhirToken,
    RecordRestriction,
)
from salud.records.outcome import FhirError
from salud.storage import locks, walk
from salud.storage.base import Base, UTCDateTime
from salud.storage.fastread import FastQuery, FastReader

_TABLES = Base.metadata.tables  # Core inserts: no ORM bookkeeping for rows never loaded
_VERSION_COLUMNS = (
    "resource_type", "fhir_id", "version_id", "last_updated", "deleted", "person_curp",
    "institution_code", "clues", "author", "sensitivity", "content",
)  # fmt: skip


async def take_sqlite_write_lock(session: AsyncSession) -> None:
    """SQLite: the database's write lock for the rest of the transaction."""
    await locks.sqlite_write_lock(session, "fhir_resources", "version_id")


async def hold_conditions(
    session: AsyncSession, keys: Iterable[str], targets: Iterable[str] = ()
) -> None:
    """Serialize the conditional creates of the same conditions until this transaction ends,
    so that two that run at once cannot both find nothing and both create, and the
    transactions that change the same resources (`targets`, "Type/id"), all taken together
    in one order before any row is touched (`locks.hold_all`: one lock per name on PostgreSQL,
    the database's write lock on SQLite). A condition worded differently but finding the same
    resource is not serialized."""
    names = [f"records:condition:{k}" for k in keys] + [f"records:row:{t}" for t in targets]
    await locks.hold_all(session, names, "fhir_resources", "version_id")


async def current(
    session: AsyncSession, kind: str, fhir_id: str, *, for_update: bool = False
) -> FhirResource | None:
    stmt = select(FhirResource).where(
        FhirResource.resource_type == kind, FhirResource.fhir_id == fhir_id
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


# A current version's columns, as the hot read returns them (types for SQLite's values).
_ROW = (
    FhirResource.version_id,
    FhirResource.last_updated,
    FhirResource.deleted,
    FhirResource.person_curp,
    FhirResource.institution_code,
    FhirResource.sensitivity,
    FhirResource.content,
)
_ROW_SQL = ", ".join(f"r.{c.key}" for c in _ROW)
# SQL from constants only: every value is a bound parameter.
_BY_ID = "FROM fhir_resources r WHERE r.resource_type = :kind AND r.fhir_id = :fhir_id"
_CURRENT = FastQuery(
    text(f"SELECT {_ROW_SQL} {_BY_ID}").columns(*_ROW),
    ["kind", "fhir_id"],
)
# The same row and, in the same round trip, a clinician's basis for its person (the hot read).
_WITH_BASIS = f"SELECT {_ROW_SQL}, {care.BASIS_COLUMNS.format(person='r.person_curp')} {_BY_ID}"
_CURRENT_WITH_BASIS = FastQuery(
    text(_WITH_BASIS)
    .bindparams(bindparam("now", type_=UTCDateTime))
    .columns(
        *_ROW,
        column("basis_care", Boolean),
        column("basis_consent", Boolean),
        column("basis_emergency", String),
    ),
    ["kind", "fhir_id", *care.BASIS_PARAMS],
)
_RESTRICTIONS = FastQuery(
    text("SELECT category FROM record_restrictions WHERE person_curp = :curp"),
    ["curp"],
)


async def current_fast(reader: FastReader, kind: str, fhir_id: str) -> dict[str, Any] | None:
    """The current version's columns, through the FastReader (the hot read)."""
    rows = await reader.fetch(_CURRENT, kind=kind, fhir_id=fhir_id)
    return dict(rows[0]) if rows else None


async def current_with_basis(
    reader: FastReader, kind: str, fhir_id: str, principal: Principal
) -> tuple[dict[str, Any] | None, care.Basis | None]:
    """The current version's columns and the principal's basis for its person (None when the
    resource belongs to nobody, or the principal has no basis): one statement."""
    rows = await reader.fetch(
        _CURRENT_WITH_BASIS, kind=kind, fhir_id=fhir_id, **care.basis_params(principal)
    )
    if not rows:
        return None, None
    row = dict(rows[0])
    basis = care.basis_from(row) if row["person_curp"] is not None else None
    for name in ("basis_care", "basis_consent", "basis_emergency"):
        del row[name]
    return row, basis


async def restrictions_fast(reader: FastReader, curp: str) -> list[str]:
    return [r["category"] for r in await reader.fetch(_RESTRICTIONS, curp=curp)]


_T = TypeVar("_T")
# Values of one `IN (…)` list: each is a parameter of the statement, and both databases
# refuse a statement of more than 32,767 (PostgreSQL's wire protocol, SQLite's
# SQLITE_MAX_VARIABLE_NUMBER): a bulk import's chunk names more targets than that.
IN_SLICE = 10_000


def in_slices(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """`values` in slices of at most IN_SLICE, one statement's `IN (…)` each."""
    for start in range(0, len(values), IN_SLICE):
        yield values[start : start + IN_SLICE]


async def live_ids(session: AsyncSession, kind: str, ids: Sequence[str]) -> set[str]:
    """Which of these ids are live resources of this type (one query per IN_SLICE ids)."""
    found: set[str] = set()
    for part in in_slices(ids):
        stmt = select(FhirResource.fhir_id).where(
            FhirResource.resource_type == kind,
            FhirResource.fhir_id.in_(part),
            FhirResource.deleted.is_(False),
        )
        found.update(await session.scalars(stmt))
    return found


async def version(
    session: AsyncSession, kind: str, fhir_id: str, version_id: int
) -> FhirResourceVersion | FhirResource | None:
    row = await current(session, kind, fhir_id)
    if row is not None and row.version_id == version_id:
        return row
    stmt = select(FhirResourceVersion).where(
        FhirResourceVersion.resource_type == kind,
        FhirResourceVersion.fhir_id == fhir_id,
        FhirResourceVersion.version_id == version_id,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def freeze(session: AsyncSession, row: FhirResource) -> None:
    """Keep the current version in the history before it is replaced. If that version is
    already there, another writer replaced it since it was read (on SQLite, which has no row
    locks: PostgreSQL's `FOR UPDATE` in `current` prevents it): a 409, never two versions
    with one number."""
    try:
        await session.execute(
            insert(FhirResourceVersion).values({c: getattr(row, c) for c in _VERSION_COLUMNS})
        )
    except IntegrityError:
        raise FhirError.one(
            409,
            "conflict",
            f"{row.resource_type}/{row.fhir_id} cambió mientras se escribía: vuelva a leerlo",
        ) from None


async def insert_current(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Insert new current versions in one statement; their keys, in the rows' order."""
    stmt = insert(_TABLES["fhir_resources"]).returning(
        _TABLES["fhir_resources"].c.id, sort_by_parameter_order=True
    )
    conn = await session.connection()
    return list((await conn.execute(stmt, rows)).scalars())


INDEX_COLUMNS = {
    "fhir_tokens": ("resource_pk", "param", "system", "code"),
    "fhir_references": ("resource_pk", "param", "target"),
    "fhir_dates": ("resource_pk", "param", "start", "end"),
}


def index_rows(items: Sequence[tuple[int, Index]]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of each index table (in `INDEX_COLUMNS` order) for resources (key, Index)."""
    return {
        "fhir_tokens": [(pk, *row) for pk, idx in items for row in idx.tokens],
        "fhir_references": [(pk, *row) for pk, idx in items for row in idx.references],
        "fhir_dates": [(pk, *row) for pk, idx in items for row in idx.dates],
    }


async def delete_indexes(session: AsyncSession, pks: Sequence[int]) -> None:
    for part in in_slices(pks):
        for model in (FhirToken, FhirReference, FhirDate):
            await session.execute(delete(model).where(model.resource_pk.in_(part)))


async def write_index(
    session: AsyncSession, resource_pk: int, idx: Index, *, fresh: bool = False
) -> None:
    """Replace a resource's index rows (`fresh`: a new resource, nothing to delete)."""
    if not fresh:
        await delete_indexes(session, [resource_pk])
    await write_indexes(session, [(resource_pk, idx)])


async def write_indexes(session: AsyncSession, items: Sequence[tuple[int, Index]]) -> None:
    """Insert the index rows of new resources: one statement per index table."""
    conn = await session.connection()
    for table, rows in index_rows(items).items():
        if rows:
            columns = INDEX_COLUMNS[table]
            await conn.execute(
                insert(_TABLES[table]), [dict(zip(columns, row, strict=True)) for row in rows]
            )


HistoryRow = tuple[int, datetime, bool, str, str]


VersionTable = type[FhirResource] | type[FhirResourceVersion]


async def history(
    session: AsyncSession, kind: str, fhir_id: str | None, limit: int, offset: int,
    since: datetime | None, hide: Callable[[VersionTable], list[ColumnElement[bool]]],
) -> tuple[int, list[HistoryRow]]:  # fmt: skip
    """(how many versions, one page of them): (version, last_updated, deleted, id, content),
    newest first, current ones included; `hide` gives the conditions that leave out what the
    caller may not see, for either table."""
    ranked: list[tuple[tuple[datetime, int, int, int], HistoryRow]] = []
    total = 0
    tables: tuple[VersionTable, ...] = (FhirResource, FhirResourceVersion)
    for rank, model in enumerate(tables):
        where = [model.resource_type == kind, *hide(model)]
        if fhir_id is not None:
            where.append(model.fhir_id == fhir_id)
        if since is not None:
            where.append(model.last_updated >= since)
        total += await session.scalar(select(func.count()).select_from(model).where(*where)) or 0
        # A page of the two tables merged: each gives its first offset + limit in the merge's
        # order, newest first, ties by version, table and row (no collation involved), so
        # that pages neither skip nor repeat a version.
        stmt = (
            select(model.version_id, model.last_updated, model.deleted, model.fhir_id,
                   model.content, model.id)
            .where(*where)
            .order_by(model.last_updated.desc(), model.version_id.desc(), model.id.desc())
            .limit(offset + limit)
        )  # fmt: skip
        for r in (await session.execute(stmt)).all():
            ranked.append(((r[1], r[0], -rank, r[5]), (r[0], r[1], r[2], r[3], r[4])))
    ranked.sort(key=lambda pair: pair[0], reverse=True)
    return total, [row for _, row in ranked[offset : offset + limit]]


def token_match(param: str, system: str | None, code: str) -> ColumnElement[bool]:
    """FHIR token search (R4 §3.1.1.4.1): `code`, `system|code`, `|code` (no system) and
    `system|` (any code of that system)."""
    cond = [FhirToken.resource_pk == FhirResource.id, FhirToken.param == param]
    if code or system is None:
        cond.append(FhirToken.code == code[:MAX_CODE])  # as indexed
    if system is not None:
        cond.append(FhirToken.system == system if system else FhirToken.system.is_(None))
    return exists().where(and_(*cond))


def reference_match(param: str, target: str) -> ColumnElement[bool]:
    return exists().where(
        FhirReference.resource_pk == FhirResource.id,
        FhirReference.param == param,
        FhirReference.target == target,
    )


def date_match(param: str, prefix: str, start: datetime, end: datetime) -> ColumnElement[bool]:
    conditions = {
        "eq": and_(FhirDate.start >= start, FhirDate.end <= end),
        "ne": or_(FhirDate.start < start, FhirDate.end > end),
        "ge": FhirDate.end >= start,
        "gt": FhirDate.end > end,
        "le": FhirDate.start <= end,
        "lt": FhirDate.start < start,
    }
    return exists().where(
        FhirDate.resource_pk == FhirResource.id, FhirDate.param == param, conditions[prefix]
    )


async def search(
    session: AsyncSession,
    kind: str,
    where: Sequence[ColumnElement[bool]],
    order: Sequence[SortKey],
    limit: int,
    offset: int,
) -> tuple[int, list[tuple[str, str]]]:
    """(total, [(id, content)]) of live resources of a type matching every condition, in
    the order of the sort keys (then by insertion, so that paging is stable). The total
    comes with the page, in one statement: an uncorrelated subquery, counted once, which
    leaves the page free to stop at its limit (a window count would read every match)."""
    base = [FhirResource.resource_type == kind, FhirResource.deleted.is_(False), *where]
    counted = select(func.count()).select_from(FhirResource).where(*base)
    total = counted.scalar_subquery().correlate(None)
    stmt = (
        select(FhirResource.fhir_id, FhirResource.content, total)
        .where(*base)
        .order_by(*(_ordering(key) for key in order), FhirResource.id)
        .limit(limit)
        .offset(offset)
    )
    found = (await session.execute(stmt)).all()
    if found:
        return int(found[0][2]), [(r[0], r[1]) for r in found]
    if offset == 0:
        return 0, []
    # A page past the end carries no count: ask for it alone.
    return int(await session.scalar(counted) or 0), []


_SORT_VALUES: dict[str, tuple[Any, Any, Any]] = {
    # index table, its value ascending (the lowest first), its value descending
    "date": (FhirDate, FhirDate.start, FhirDate.end),
    "token": (FhirToken, FhirToken.code, FhirToken.code),
    "reference": (FhirReference, FhirReference.target, FhirReference.target),
}


def _ordering(key: SortKey) -> ColumnElement[Any]:
    """A resource with several values sorts by its lowest ascending and its highest
    descending (for a date, a period's start and end); one with none sorts last."""
    column: Any
    if key.kind in ("_lastUpdated", "_id"):  # never null: a plain order an index can serve
        column = FhirResource.last_updated if key.kind == "_lastUpdated" else FhirResource.fhir_id
        plain: ColumnElement[Any] = column.desc() if key.descending else column.asc()
        return plain
    table, low, high = _SORT_VALUES[key.kind]
    column = (
        select(func.max(high) if key.descending else func.min(low))
        .where(table.resource_pk == FhirResource.id, table.param == key.param)
        .scalar_subquery()
    )
    ordered: ColumnElement[Any] = column.desc() if key.descending else column.asc()
    return ordered.nulls_last()


async def restrictions(session: AsyncSession, curp: str) -> list[str]:
    stmt = (
        select(RecordRestriction.category)
        .where(RecordRestriction.person_curp == curp)
        .order_by(RecordRestriction.category)
    )
    return list(await session.scalars(stmt))


async def replace_restrictions(
    session: AsyncSession, curp: str, categories: list[str], actor: str, at: datetime
) -> None:
    await session.execute(delete(RecordRestriction).where(RecordRestriction.person_curp == curp))
    if categories:
        await session.execute(
            insert(RecordRestriction),
            [{"person_curp": curp, "category": c, "created_at": at, "created_by": actor}
             for c in categories],
        )  # fmt: skip


async def search_all_types(
    session: AsyncSession, where: Sequence[ColumnElement[bool]], limit: int, offset: int
) -> tuple[int, list[tuple[str, str, str]]]:
    """(total, [(type, id, content)]) of live resources of any type matching every condition."""
    base = [FhirResource.deleted.is_(False), *where]
    total = await session.scalar(select(func.count()).select_from(FhirResource).where(*base))
    stmt = (
        select(FhirResource.resource_type, FhirResource.fhir_id, FhirResource.content)
        .where(*base)
        .order_by(FhirResource.resource_type, FhirResource.last_updated, FhirResource.id)
        .limit(limit)
        .offset(offset)
    )
    rows = [(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()]
    return int(total or 0), rows


async def reference_targets(
    session: AsyncSession, kind: str, ids: list[str], param: str
) -> list[str]:
    """The "Type/id" a reference parameter of these resources points at."""
    stmt = (
        select(FhirReference.target)
        .join(FhirResource, FhirResource.id == FhirReference.resource_pk)
        .where(
            FhirResource.resource_type == kind,
            FhirResource.fhir_id.in_(ids),
            FhirReference.param == param,
        )
        .distinct()
    )
    return sorted(await session.scalars(stmt))


async def referring(
    session: AsyncSession, source: str, param: str, targets: list[str]
) -> list[str]:
    """ "Type/id" of live resources of `source` whose `param` points at any of the targets."""
    stmt = (
        select(FhirResource.fhir_id)
        .join(FhirReference, FhirResource.id == FhirReference.resource_pk)
        .where(
            FhirResource.resource_type == source,
            FhirResource.deleted.is_(False),
            FhirReference.param == param,
            FhirReference.target.in_(targets),
        )
        .distinct()
    )
    return [f"{source}/{i}" for i in sorted(await session.scalars(stmt))]


def _in_record(kind: str, curp: str) -> ColumnElement[bool]:
    """In this person's record, or in nobody's for a type that holds no one's data. A type of
    the Patient compartment kept under nobody (it names its patient only by an absolute URL
    or an identifier) is still someone's data, and never another person's record's."""
    if kind in PATIENT_COMPARTMENT:
        return FhirResource.person_curp == curp
    return or_(FhirResource.person_curp == curp, FhirResource.person_curp.is_(None))


async def live_in_record(
    session: AsyncSession, kind: str, fhir_id: str, curp: str,
    extra: Sequence[ColumnElement[bool]],
) -> str | None:  # fmt: skip
    """The content of a live resource that belongs to this person's record (or that belongs
    to nobody's: Organization, Location, Practitioner…), else None."""
    stmt = select(FhirResource.content).where(
        FhirResource.resource_type == kind,
        FhirResource.fhir_id == fhir_id,
        FhirResource.deleted.is_(False),
        _in_record(kind, curp),
        *extra,
    )
    found: str | None = await session.scalar(stmt)
    return found


async def live_of_types(
    session: AsyncSession, curp: str, kinds: Sequence[str], extra: Sequence[ColumnElement[bool]]
) -> list[tuple[str, str, str]]:
    """(type, id, content) of every live resource of these types in a person's record that
    meets the extra conditions, most recently written first (unpaged: one person's record)."""
    stmt = (
        select(FhirResource.resource_type, FhirResource.fhir_id, FhirResource.content)
        .where(
            FhirResource.person_curp == curp,
            FhirResource.resource_type.in_(kinds),
            FhirResource.deleted.is_(False),
            *extra,
        )
        .order_by(FhirResource.last_updated.desc(), FhirResource.id.desc())
    )
    return [(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()]


async def live_in_record_many(
    session: AsyncSession, kind: str, ids: Sequence[str], curp: str,
    extra: Sequence[ColumnElement[bool]], *, nobody_only: bool = False,
) -> list[tuple[str, str]]:  # fmt: skip
    """(id, content) of those of these resources that are live and belong to this person's
    record (or to nobody's: Organization, Location, Practitioner…), as `live_in_record`;
    with `nobody_only`, only those of nobody's record. In slices under the parameter limit."""
    where = FhirResource.person_curp.is_(None) if nobody_only else _in_record(kind, curp)
    found: list[tuple[str, str]] = []
    for part in in_slices(ids):
        stmt = select(FhirResource.fhir_id, FhirResource.content).where(
            FhirResource.resource_type == kind,
            FhirResource.fhir_id.in_(part),
            FhirResource.deleted.is_(False),
            where,
            *extra,
        )
        found += [(r[0], r[1]) for r in (await session.execute(stmt)).all()]
    return sorted(found)


async def reclassify(
    sessions: async_sessionmaker[AsyncSession],
    classify: Callable[[dict[str, Any]], str],
    *,
    chunk: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Recompute the sensitive categories of every stored version (current rows and the
    history), `chunk` rows per transaction walked by key; how many changed. A row written
    meanwhile keeps what its writer computed (compare-and-set on the value read)."""
    changed = 0
    for name in ("fhir_resources", "fhir_resource_versions"):
        table = _TABLES[name]
        change = (
            update(table)
            .where(table.c.id == bindparam("row_id"), table.c.content == bindparam("seen"))
            .values(sensitivity=bindparam("now"))
        )

        def moved(rows: Sequence[Any]) -> list[dict[str, Any]]:
            return [
                {"row_id": pk, "seen": content, "now": now}
                for pk, was, content in rows
                if content and (now := classify(orjson.loads(content))) != was
            ]

        changed += await walk.update_by_key(
            sessions, table, [table.c.sensitivity, table.c.content], change, moved,
            chunk=chunk, progress=progress,
        )  # fmt: skip
    return changed


async def count_versions(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        current = await session.scalar(select(func.count()).select_from(FhirResource))
        earlier = await session.scalar(select(func.count()).select_from(FhirResourceVersion))
    return int(current or 0) + int(earlier or 0)
