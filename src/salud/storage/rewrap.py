"""Re-wrapping a column of sealed values under the current key-encryption key, in chunks.

After a KEK rotation every sealed value must have its data key wrapped by the new KEK before
the old one is retired (`salud keys rewrap`). Photos and fingerprints are tables of the
country's size, so they are walked by primary key, `chunk` rows per transaction: a failure
loses nothing (a chunk is all or nothing, values already re-wrapped are left alone on the
next run) and memory stays flat. Only the wrapped data key changes; the body is not
re-encrypted (`kit.sealing.rewrap`).

A value that cannot be opened (its KEK is not in the keyring, or its bytes were altered) does
not stop the walk: it is left as it is and reported (table, id, reason), so that one bad row
cannot hold back the rotation of all the others."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.kit.sealing import Keyring, SealError, rewrap
from salud.storage.walk import update_by_key


async def count(sessions: async_sessionmaker[AsyncSession], table: Table) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


@dataclass(frozen=True)
class Unreadable:
    """A sealed value that could not be re-wrapped (it is left as it was)."""

    table: str
    row_id: int
    reason: str


@dataclass
class RewrapResult:
    moved: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)


async def rewrap_column(
    sessions: async_sessionmaker[AsyncSession], table: Table, column: str, ring: Keyring,
    *, chunk: int = 500, progress: Callable[[int], None] | None = None,
) -> RewrapResult:  # fmt: skip
    """Re-wrap every value of `table.column` not yet under the current KEK: how many moved,
    and the values that could not be opened (skipped, not fatal)."""
    key, sealed = table.c.id, table.c[column]
    # Only if the value is still the one read: a photo replaced meanwhile (read committed)
    # is sealed under the current KEK already and must not be overwritten by the old image.
    change = (
        update(table)
        .where(key == bindparam("row_id"), sealed == bindparam("old_blob"))
        .values({column: bindparam("blob")})
    )

    unreadable: list[Unreadable] = []

    def fresh(rows: Sequence[Any]) -> list[dict[str, Any]]:
        params = []
        for row_id, blob in rows:
            if blob is None:
                continue
            try:
                new = rewrap(blob, ring)
            except SealError as exc:
                unreadable.append(Unreadable(table.name, int(row_id), str(exc)))
                continue
            if new != blob:
                params.append({"row_id": row_id, "old_blob": blob, "blob": new})
        return params

    moved = await update_by_key(sessions, table, [sealed], change, fresh, chunk=chunk,
                                progress=progress)  # fmt: skip
    return RewrapResult(moved, unreadable)
