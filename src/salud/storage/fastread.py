"""Hot-path reads that skip the ORM session.

Measured here (bench/RESULTS.md): a read through an AsyncSession costs about 1 ms of CPU
(session set-up, greenlet switches, stack copies), several times the query itself. For the
few reads that every request of a busy endpoint makes, PostgreSQL is asked through a plain
asyncpg pool with prepared statements (GUIDE.md: asyncpg for PostgreSQL); SQLite, the
embedded development default, keeps the SQLAlchemy path. Both return the same mappings.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import TextClause
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.selectable import TextualSelect

_PARAM = re.compile(r"(?<!:):([A-Za-z_]\w*)")


class FastQuery:
    """One typed SQL statement with named parameters (:name), usable on both backends."""

    def __init__(self, statement: TextClause | TextualSelect, params: Sequence[str]) -> None:
        self.statement = statement
        self.params = tuple(params)
        order = {name: i + 1 for i, name in enumerate(self.params)}
        self.postgresql = _PARAM.sub(lambda m: f"${order[m.group(1)]}", str(statement))


class _Lender:
    """The smallest pool that serves here: idle connections on a stack, opened on demand up
    to a limit. asyncpg's own Pool adds timeouts, shields and resets to every acquire and
    release (a third of this path's CPU, measured); reads need none of them."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._size = size
        self._opened = 0
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def borrow(self) -> asyncpg.Connection:
        if self._idle:
            return self._idle.pop()
        if self._opened < self._size:
            self._opened += 1
            try:
                return await asyncpg.connect(self._dsn)
            except BaseException:
                self._opened -= 1
                raise
        waiter: asyncio.Future[asyncpg.Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back(waiter.result())  # handed over just as we were cancelled
            raise

    def give_back(self, conn: asyncpg.Connection, *, broken: bool = False) -> None:
        if broken or conn.is_closed():
            self._opened -= 1
            conn.terminate()
            if self._waiters:  # someone waits for a connection that will not come back
                task = asyncio.get_running_loop().create_task(self._replace())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # hand over directly to the longest waiting
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def _replace(self) -> None:
        self._opened += 1
        try:
            conn = await asyncpg.connect(self._dsn)
        except Exception as exc:
            self._opened -= 1
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
                    break
            return
        self.give_back(conn)

    async def close(self) -> None:
        for conn in self._idle:
            await conn.close()
        self._idle.clear()


class FastReader:
    def __init__(self, engine: AsyncEngine, pool_size: int = 10) -> None:
        self._engine = engine
        self._pool_size = pool_size
        self._pool: _Lender | None = None

    async def start(self) -> None:
        if self._engine.dialect.name != "postgresql":
            return
        url = make_url(self._engine.url).set(drivername="postgresql")
        self._pool = _Lender(url.render_as_string(hide_password=False), self._pool_size)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def fetch(self, query: FastQuery, **params: Any) -> Sequence[Mapping[str, Any]]:
        if self._pool is not None:
            conn = await self._pool.borrow()
            try:
                rows: Sequence[Mapping[str, Any]] = await conn.fetch(
                    query.postgresql, *(params[name] for name in query.params)
                )
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                self._pool.give_back(conn, broken=True)
                raise
            except BaseException:
                self._pool.give_back(conn, broken=conn.is_in_transaction())
                raise
            self._pool.give_back(conn)
            return rows
        async with self._engine.connect() as conn:
            result = await conn.execute(query.statement, params)
            return [dict(row) for row in result.mappings()]
