"""Engine and session factory. One session per request or job; commit at that boundary."""

from __future__ import annotations

from typing import Any

import asyncpg
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while one writer writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    # A database error quotes its statement; never its values (CURPs, names) into a log.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", False)
    return create_async_engine(url, **kwargs)


def _sqlstates(exc: BaseException) -> set[str | None]:
    """The SQLSTATE codes a database error carries, through SQLAlchemy's and the driver's
    wrappers (asyncpg, psycopg)."""
    orig = getattr(exc, "orig", exc)
    codes = {getattr(orig, "sqlstate", None), getattr(orig, "pgcode", None)}
    if orig.__cause__ is not None:
        codes.add(getattr(orig.__cause__, "sqlstate", None))
    return codes


def is_unique_violation(exc: BaseException) -> bool:
    """Whether a database error is a unique index refusing a second row (PostgreSQL SQLSTATE
    23505, SQLite's UNIQUE constraint): another writer got there first."""
    orig = getattr(exc, "orig", exc)
    return "23505" in _sqlstates(exc) or "UNIQUE constraint failed" in str(orig)


# Where a text PostgreSQL cannot hold (U+0000: SQLSTATE 22021) surfaces: SQLAlchemy wraps
# asyncpg's error in its generic DBAPIError; the FastReader's raw connections raise asyncpg's.
DATA_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.DBAPIError, asyncpg.exceptions.DataError,
)  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """Whether a database error is PostgreSQL ending a transaction to break a deadlock
    (40P01) or a serialization failure (40001): nothing was written, and repeating works."""
    return bool({"40P01", "40001"} & _sqlstates(exc))


def is_bad_text(exc: BaseException) -> bool:
    """Whether a database error is a text with a character the database refuses (NUL)."""
    return "22021" in _sqlstates(exc)


def refusal(exc: BaseException) -> tuple[int, str, str] | None:
    """(HTTP status, FHIR issue code, reason) of a database error that is no fault of the
    server: a unique index refusing what another request wrote at the same moment, a
    transaction the database ended to break a deadlock (nothing was written), a text it cannot
    hold; None for anything else (a fault)."""
    if is_unique_violation(exc):
        return 409, "conflict", "otra operación escribió lo mismo al mismo tiempo; repita"
    if is_transient(exc):
        return 409, "transient", "otra operación usaba los mismos datos; nada se guardó: repita"
    if is_bad_text(exc):
        return 400, "invalid", "un texto contiene el carácter nulo (U+0000), que no se admite"
    return None


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def dialect_name(session: AsyncSession) -> str:
    bind = session.bind
    if bind is None:
        raise RuntimeError("the session is not bound to an engine")
    return bind.dialect.name
