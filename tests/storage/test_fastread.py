"""The hot-path reader: same answers as the ORM path, and a pool that cannot leak."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from salud.storage.fastread import FastQuery, FastReader

pytestmark = pytest.mark.db

PID = FastQuery(text("SELECT CAST(:a AS INTEGER) + CAST(:b AS INTEGER) AS total"), ["a", "b"])


def test_named_parameters_become_positional() -> None:
    query = FastQuery(text("SELECT * FROM t WHERE x = :x AND y = :y OR z = :x::int"), ["x", "y"])
    assert query.postgresql == "SELECT * FROM t WHERE x = $1 AND y = $2 OR z = $1::int"


async def test_many_concurrent_reads_through_a_small_pool(engine: AsyncEngine) -> None:
    reader = FastReader(engine, pool_size=2)
    await reader.start()
    try:
        answers = await asyncio.gather(*(reader.fetch(PID, a=i, b=1) for i in range(50)))
        assert [rows[0]["total"] for rows in answers] == [i + 1 for i in range(50)]
    finally:
        await reader.close()


async def test_cancelled_waiters_do_not_leak_connections(engine: AsyncEngine) -> None:
    reader = FastReader(engine, pool_size=1)
    await reader.start()
    slow = FastQuery(text("SELECT CAST(:n AS INTEGER) AS n"), ["n"])
    if engine.dialect.name == "postgresql":
        slow = FastQuery(text("SELECT pg_sleep(0.2), CAST(:n AS INTEGER) AS n"), ["n"])
    try:
        tasks = [asyncio.create_task(reader.fetch(slow, n=i)) for i in range(6)]
        await asyncio.sleep(0.05)
        for task in tasks[1:4]:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(d, asyncio.CancelledError) for d in done) <= 3
        # The single connection came back: a new read does not hang.
        rows = await asyncio.wait_for(reader.fetch(PID, a=2, b=3), timeout=5)
        assert rows[0]["total"] == 5
    finally:
        await reader.close()


@pytest.mark.postgresql
async def test_a_killed_connection_is_replaced(engine: AsyncEngine) -> None:
    reader = FastReader(engine, pool_size=1)
    await reader.start()
    try:
        pid = (await reader.fetch(FastQuery(text("SELECT pg_backend_pid() AS pid"), [])))[0]["pid"]
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(Exception):  # noqa: B017,PT011 - whichever error asyncpg raises
            await reader.fetch(PID, a=1, b=1)
        rows = await asyncio.wait_for(reader.fetch(PID, a=1, b=1), timeout=5)
        assert rows[0]["total"] == 2
    finally:
        await reader.close()
