"""All SQL of the registry. Callers are services; nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from salud.identity.models import Affiliation, Guardianship, Person, PersonVersion
from salud.storage.engine import dialect_name
from salud.storage.fastread import FastQuery, FastReader

PERSON_TABLE: Table = Person.__table__  # type: ignore[assignment]
AFFILIATION_TABLE: Table = Affiliation.__table__  # type: ignore[assignment]
# Every column of persons but the surrogate key, in table order (the bulk path copies these).
PERSON_COLUMNS: tuple[str, ...] = tuple(c.name for c in PERSON_TABLE.columns if c.name != "id")
AFFILIATION_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in AFFILIATION_TABLE.columns if c.name != "id"
)


async def get_by_curp(
    session: AsyncSession, curp: str, *, for_update: bool = False, affiliations: bool = True
) -> Person | None:
    """The person (with affiliations unless told otherwise: one query fewer)."""
    stmt = select(Person).where(Person.curp == curp)
    if affiliations:
        stmt = stmt.options(selectinload(Person.affiliations))
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


_PERSON_READ_COLUMNS = ", ".join(f"p.{c}" for c in PERSON_COLUMNS)
_AFFILIATION_READ_COLUMNS = ", ".join(
    f"a.{c} AS a_{c}" for c in AFFILIATION_COLUMNS if c != "person_id"
)
# The hot read: one indexed statement, person and affiliations together (no ORM identity map,
# no second round trip). Compiled once; asyncpg keeps it prepared per connection.
_READ_ONE = text(
    f"SELECT {_PERSON_READ_COLUMNS}, {_AFFILIATION_READ_COLUMNS} "  # noqa: S608
    "FROM persons p LEFT JOIN affiliations a ON a.person_id = p.id "
    "WHERE p.curp = :curp ORDER BY a.id"
).columns(
    *(PERSON_TABLE.c[c] for c in PERSON_COLUMNS),
    *(AFFILIATION_TABLE.c[c].label(f"a_{c}") for c in AFFILIATION_COLUMNS if c != "person_id"),
)


READ_ONE = FastQuery(_READ_ONE, ["curp"])


async def read_by_curp(
    reader: FastReader, curp: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The person's columns and affiliation rows, or None (the hot read path)."""
    rows = await reader.fetch(READ_ONE, curp=curp)
    if not rows:
        return None
    first = rows[0]
    person = {c: first[c] for c in PERSON_COLUMNS}
    affiliations = [
        {c: row[f"a_{c}"] for c in AFFILIATION_COLUMNS if c != "person_id"}
        for row in rows
        if row["a_institution_code"] is not None
    ]
    return person, affiliations


async def by_curps(session: AsyncSession, curps: Sequence[str]) -> Sequence[Person]:
    """The registered persons among these CURPs, in CURP order (without affiliations)."""
    stmt = select(Person).where(Person.curp.in_(curps)).order_by(Person.curp)
    return (await session.execute(stmt)).scalars().all()


async def existing_curps(session: AsyncSession, curps: Sequence[str]) -> set[str]:
    """Which of these CURPs are registered. In slices of 10,000: each is a parameter, and
    a statement takes at most 32,767 (a bulk import's chunk may name more)."""
    found: set[str] = set()
    for start in range(0, len(curps), 10_000):
        stmt = select(Person.curp).where(Person.curp.in_(curps[start : start + 10_000]))
        found.update(await session.scalars(stmt))
    return found


async def affiliation_keys(
    session: AsyncSession, curps: Sequence[str]
) -> set[tuple[str, int, str | None]]:
    """(CURP, institution code, member number) of every affiliation of these persons."""
    stmt = (
        select(Person.curp, Affiliation.institution_code, Affiliation.member_number)
        .join(Affiliation, Affiliation.person_id == Person.id)
        .where(Person.curp.in_(curps))
    )
    return {(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()}


async def curp_exists(session: AsyncSession, curp: str) -> bool:
    found = await session.execute(select(Person.id).where(Person.curp == curp))
    return found.first() is not None


async def bump_version(
    session: AsyncSession, person_id: int, expected_version: int, values: dict[str, Any]
) -> bool:
    """Compare-and-set on the version: False when someone else changed the row first."""
    result = await session.execute(
        update(Person)
        .where(Person.id == person_id, Person.version == expected_version)
        .values(version=expected_version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def replace_affiliations(
    session: AsyncSession, person_id: int, rows: Sequence[dict[str, Any]]
) -> None:
    await session.execute(
        AFFILIATION_TABLE.delete().where(AFFILIATION_TABLE.c.person_id == person_id)
    )
    if rows:
        await session.execute(insert(Affiliation), [{**r, "person_id": person_id} for r in rows])


async def add_version(session: AsyncSession, version: PersonVersion) -> None:
    session.add(version)
    await session.flush()


async def versions(session: AsyncSession, person_id: int) -> Sequence[PersonVersion]:
    stmt = (
        select(PersonVersion)
        .where(PersonVersion.person_id == person_id)
        .order_by(PersonVersion.version)
    )
    return (await session.execute(stmt)).scalars().all()


async def search(
    session: AsyncSession,
    *,
    curp: str | None,
    first_surname_key: str | Sequence[str] | None,
    given_names_key: str | None,
    birth_date: date | None,
    birth_state: str | None,
    address_state: str | None,
    after_id: int,
    limit: int,
) -> Sequence[Person]:
    stmt = select(Person).where(Person.id > after_id).order_by(Person.id).limit(limit)
    if curp:
        stmt = stmt.where(Person.curp == curp)
    if isinstance(first_surname_key, str):
        stmt = stmt.where(Person.first_surname_key == first_surname_key)
    elif first_surname_key:  # any of these (an IN on the index's leading column)
        stmt = stmt.where(Person.first_surname_key.in_(first_surname_key))
    if given_names_key:
        stmt = stmt.where(Person.given_names_key.startswith(given_names_key, autoescape=True))
    if birth_date:
        stmt = stmt.where(Person.birth_date == birth_date)
    if birth_state:
        stmt = stmt.where(Person.birth_state == birth_state)
    if address_state:
        stmt = stmt.where(Person.address_state == address_state)
    return (await session.execute(stmt)).scalars().all()


async def bulk_insert(
    session: AsyncSession,
    persons: Sequence[tuple[Any, ...]],
    affiliations: dict[str, list[tuple[Any, ...]]],
) -> list[str]:
    """Insert persons whose CURP is new, with their affiliations, in the caller's transaction.

    `persons` are tuples in PERSON_COLUMNS order; `affiliations` maps a CURP to tuples in
    AFFILIATION_COLUMNS order without person_id. A CURP already registered is left as it is
    (so re-running an import adds nothing twice). Returns the CURPs inserted.
    """
    if not persons:
        return []
    if dialect_name(session) == "postgresql":
        inserted = await _copy_persons_postgresql(session, persons)
    else:
        inserted = await _insert_persons_generic(session, persons)
    rows = [(person_id, *aff) for person_id, curp in inserted for aff in affiliations.get(curp, ())]
    if rows:
        if dialect_name(session) == "postgresql":
            raw = await _asyncpg(session)
            await raw.copy_records_to_table(
                "affiliations", records=rows, columns=list(AFFILIATION_COLUMNS)
            )
        else:
            await session.execute(
                insert(AFFILIATION_TABLE),
                [dict(zip(AFFILIATION_COLUMNS, r, strict=True)) for r in rows],
            )
    return [curp for _, curp in inserted]


async def _asyncpg(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, inside the session's transaction (the
    adapter begins it lazily: a statement through SQLAlchemy first makes sure it has)."""
    conn = await session.connection()
    await conn.exec_driver_sql("SELECT 1")
    raw = await conn.get_raw_connection()
    return raw.driver_connection


_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS person_stage "
    "(LIKE persons INCLUDING DEFAULTS EXCLUDING CONSTRAINTS) ON COMMIT DELETE ROWS"
)
_COLUMNS_SQL = ", ".join(PERSON_COLUMNS)


async def _copy_persons_postgresql(
    session: AsyncSession, persons: Sequence[tuple[Any, ...]]
) -> list[tuple[int, str]]:
    """COPY straight into persons the CURPs not yet present, with keys drawn in advance.

    COPY cannot skip conflicts, and per-row INSERTs are 10–50x slower (GUIDE.md), so: one
    indexed look-up finds the CURPs already registered, one call draws the new keys from the
    sequence, one COPY writes the rest. If another import registers one of these CURPs in
    between, the COPY fails inside a savepoint and the chunk goes the slower, conflict-proof
    way (stage table + INSERT … ON CONFLICT DO NOTHING).
    """
    raw = await _asyncpg(session)
    # A chunk's commit need not wait for the WAL flush: if the server crashes right after,
    # re-running the file restores what was lost (imports are idempotent). README says so.
    await raw.execute("SET LOCAL synchronous_commit TO OFF")
    present = await raw.fetch(
        "SELECT curp FROM persons WHERE curp = ANY($1::varchar[])", [p[0] for p in persons]
    )
    known = {r[0] for r in present}
    fresh = [p for p in persons if p[0] not in known]
    if not fresh:
        return []
    keys = await raw.fetch(
        "SELECT nextval(pg_get_serial_sequence('persons', 'id')) FROM generate_series(1, $1)",
        len(fresh),
    )
    records = [(k[0], *p) for k, p in zip(keys, fresh, strict=True)]
    try:
        async with raw.transaction():  # a savepoint inside the chunk's transaction
            await raw.copy_records_to_table(
                "persons", records=records, columns=["id", *PERSON_COLUMNS]
            )
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != "23505":  # unique_violation
            raise
        return await _stage_persons_postgresql(raw, fresh)
    return [(r[0], r[1]) for r in records]


async def _stage_persons_postgresql(
    raw: Any, persons: Sequence[tuple[Any, ...]]
) -> list[tuple[int, str]]:
    await raw.execute(_STAGE_DDL)
    await raw.copy_records_to_table("person_stage", records=persons, columns=list(PERSON_COLUMNS))
    rows = await raw.fetch(
        f"INSERT INTO persons ({_COLUMNS_SQL}) SELECT {_COLUMNS_SQL} FROM person_stage "  # noqa: S608
        "ON CONFLICT (curp) DO NOTHING RETURNING id, curp"
    )
    await raw.execute("TRUNCATE person_stage")
    return [(r["id"], r["curp"]) for r in rows]


async def _insert_persons_generic(
    session: AsyncSession, persons: Sequence[tuple[Any, ...]]
) -> list[tuple[int, str]]:
    """SQLite: skip CURPs already present, insert the rest in one executemany (no RETURNING,
    which would turn it into row-by-row statements), then read back the new keys."""
    fresh_curps = [p[0] for p in persons]
    known = {curp for curp, _ in await _ids_of(session, fresh_curps)}
    fresh = [p for p in persons if p[0] not in known]
    if not fresh:
        return []
    await session.execute(
        insert(PERSON_TABLE), [dict(zip(PERSON_COLUMNS, p, strict=True)) for p in fresh]
    )
    return [(key, curp) for curp, key in await _ids_of(session, [p[0] for p in fresh])]


async def _ids_of(session: AsyncSession, curps: Sequence[str]) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for start in range(0, len(curps), 500):
        part = curps[start : start + 500]
        rows = await session.execute(
            select(PERSON_TABLE.c.curp, PERSON_TABLE.c.id).where(PERSON_TABLE.c.curp.in_(part))
        )
        found.extend((row.curp, row.id) for row in rows)
    return found


async def guardianships(
    session: AsyncSession, minor_curp: str, *, for_update: bool = False
) -> Sequence[Guardianship]:
    """Every link of this minor, the oldest first (ended ones included)."""
    stmt = (
        select(Guardianship)
        .where(Guardianship.minor_curp == minor_curp)
        .order_by(Guardianship.linked_at, Guardianship.id)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().all()


async def wards(session: AsyncSession, guardian_curp: str) -> Sequence[tuple[Person, str]]:
    """The registered persons this CURP has a link not ended to, with the relationship."""
    stmt = (
        select(Person, Guardianship.relationship)
        .join(Guardianship, Guardianship.minor_curp == Person.curp)
        .where(Guardianship.guardian_curp == guardian_curp, Guardianship.ended_at.is_(None))
        .order_by(Person.birth_date, Person.curp)
    )
    return [(p, r) for p, r in (await session.execute(stmt)).all()]
