"""Changing a large table in chunks walked by primary key.

Photos, fingerprints and the FHIR store are tables of the country's size: a change to every
row (a KEK rotation's re-wrap, a reclassification) walks them by `id`, `chunk` rows per
transaction, so a failure loses nothing (a chunk is all or nothing; the rows already changed
are left alone on the next run) and memory stays flat."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, Update, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def update_by_key(
    sessions: async_sessionmaker[AsyncSession],
    table: Table,
    columns: Sequence[ColumnElement[Any]],
    change: Update,
    changes_of: Callable[[Sequence[Row[Any]]], list[dict[str, Any]]],
    *,
    chunk: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Read `id` and `columns` of every row, a chunk at a time; `changes_of(rows)` gives the
    parameters of `change` (an UPDATE with bind parameters) for the rows to change, executed
    in the chunk's transaction. How many rows were changed."""
    key = table.c.id
    changed, after = 0, 0
    while True:
        async with sessions() as session, session.begin():
            stmt = select(key, *columns).where(key > after).order_by(key).limit(chunk)
            rows = (await session.execute(stmt)).all()
            if not rows:
                return changed
            params = changes_of(rows)
            if params:
                await session.execute(change, params)
        changed += len(params)
        after = rows[-1][0]
        if progress is not None:
            progress(len(rows))
