"""Re-wrapping a column of sealed values under the current key-encryption key, in chunks.

After a KEK rotation every sealed value must have its data key wrapped by the new KEK before
the old one is retired (`salud keys rewrap`). Photos and fingerprints are tables of the
country's size, so they are walked by primary key, `chunk` rows per transaction: a failure
loses nothing (a chunk is all or nothing, values already re-wrapped are left alone on the
next run) and memory stays flat. Only the wrapped data key changes; the body is not
re-encrypted (`kit.sealing.rewrap`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.kit.sealing import Keyring, rewrap
from salud.storage.walk import update_by_key


async def count(sessions: async_sessionmaker[AsyncSession], table: Table) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


async def rewrap_column(
    sessions: async_sessionmaker[AsyncSession], table: Table, column: str, ring: Keyring,
    *, chunk: int = 500, progress: Callable[[int], None] | None = None,
) -> int:  # fmt: skip
    """Re-wrap every value of `table.column` not yet under the current KEK; how many moved."""
    key, sealed = table.c.id, table.c[column]
    # Only if the value is still the one read: a photo replaced meanwhile (read committed)
    # is sealed under the current KEK already and must not be overwritten by the old image.
    change = (
        update(table)
        .where(key == bindparam("row_id"), sealed == bindparam("old_blob"))
        .values({column: bindparam("blob")})
    )

    def fresh(rows: Sequence[Any]) -> list[dict[str, Any]]:
        return [
            {"row_id": row_id, "old_blob": blob, "blob": new}
            for row_id, blob in rows
            if blob is not None and (new := rewrap(blob, ring)) != blob
        ]

    return await update_by_key(sessions, table, [sealed], change, fresh, chunk=chunk,
                               progress=progress)  # fmt: skip
