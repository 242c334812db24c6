"""Named locks held until the transaction ends, for writes that no unique index can guard
(a check, then an insert that depends on it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from salud.storage.engine import dialect_name

# The advisory-lock class of these named locks ("SaLk"): locks with two int4 keys never meet
# the one-bigint keys of the audit log and the progress snapshot (PostgreSQL keeps the two
# key spaces apart).
_NAMED_CLASS = int.from_bytes(b"SaLk", "big", signed=True)


def _key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True
    )


def apart(session: AsyncSession) -> bool:
    """Whether named locks are held one by one (PostgreSQL), apart from other writers; on
    SQLite every one of them is the database's write lock, which every writer waits for."""
    return dialect_name(session) == "postgresql"


async def hold(session: AsyncSession, name: str, table: str, column: str = "id") -> None:
    """Serialize the transactions that hold `name` until each ends (`hold_all`)."""
    await hold_all(session, [name], table, column)


async def hold_all(
    session: AsyncSession, names: Iterable[str], table: str, column: str = "id"
) -> None:
    """Serialize the transactions that hold any of `names` until each ends. PostgreSQL: one
    transaction-scoped advisory lock per name, taken in a fixed order (two transactions
    holding several never wait on each other in a cycle; holding one again is free); SQLite:
    the database's write lock, taken by a write to `table` that changes nothing
    (`sqlite_write_lock`)."""
    keys = sorted({_key(n) for n in names})
    if not keys:
        return
    if not apart(session):
        await sqlite_write_lock(session, table, column)
        return
    for key in keys:
        await session.execute(select(func.pg_advisory_xact_lock(_NAMED_CLASS, key)))


async def sqlite_write_lock(
    executor: AsyncSession | AsyncConnection, table: str, column: str = "id"
) -> None:
    """SQLite: the database's write lock until the transaction ends, taken by a write to
    `table` that changes nothing (waiting for another writer up to busy_timeout). Reads made
    before a transaction's first write run outside it, so take it before reading what a
    write depends on. `table` and `column` are names in the code, never input."""
    await executor.execute(text(f"UPDATE {table} SET {column} = {column} WHERE 1 = 0"))  # noqa: S608
