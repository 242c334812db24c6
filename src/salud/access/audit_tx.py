"""Audit entries written inside the caller's own transaction.

A change of personal data and its audit entry commit together or not at all (one write, one
transaction). It also avoids a deadlock on SQLite, where the request's transaction holds the
only write lock while the group-commit writer would wait for it. Reads keep the group commit
(`AuditLog.record`), which costs them far less.

The chain's lock (one for every writer of every process) is the last lock a transaction
takes: a change's entries wait in the session (`record_at_commit`) and are appended just
before it commits (a `before_commit` hook). Appended when recorded, in the middle of a write,
the lock was held while the write went on to lock rows, and a transaction holding one of those
rows that then asked for the chain's lock closed a cycle: PostgreSQL broke it with a deadlock
error, a 500 (two bookings of one day while someone rescheduled to it, say)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from salud.access.audit import AuditEntry, _row_of
from salud.access.audit_chain import (
    _LAST,
    AUDIT_TABLE,
    _seal,
    _seal_presealed,
    presealed,
    seal_alike,
)
from salud.access.audit_postgres import ADVISORY_LOCK_KEY, COLUMNS, PG_INSERT, batch_json
from salud.errors import InvalidInput
from salud.kit.clock import utcnow
from salud.storage import locks

# From how many rows a batch goes by COPY (measured: 5,000 rows, ~40 µs a row through the JSON
# statement, far less by COPY; a handful of rows is one round trip either way).
COPY_FROM = 200
_COPY_ROW = itemgetter(*COLUMNS)


async def record_in_transaction(
    session: AsyncSession, key: bytes, entries: Sequence[AuditEntry]
) -> int:
    """Append the entries to the chain within the session's transaction; the first seq."""
    now = utcnow()
    rows = [_row_of(entry, now) for entry in entries]
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        # The lock serializes every append of every process until this transaction ends, so
        # what can be done before it is: the canonical bytes of each row (all but its seq).
        parts = [presealed(row) for row in rows]
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"))
        first = _seal_presealed(rows, parts, key, (await conn.execute(_LAST)).first())
        if len(rows) >= COPY_FROM:  # a bulk import's chunk
            await _copy(conn, rows)
        else:  # one JSON parameter, as the group-commit appender sends its batches
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            await raw.execute(PG_INSERT, batch_json(rows))
        return first
    # SQLite: the write lock before the last entry is read, or a transaction that has not
    # written yet could read the same last entry as another and collide on its seq.
    await locks.sqlite_write_lock(conn, "audit_events", "seq")
    first = _seal(rows, key, (await conn.execute(_LAST)).first())
    await conn.execute(insert(AUDIT_TABLE), rows)
    return first


_PENDING = "salud.audit.pending"  # session.info key: (session, key, entries) until commit


def record_at_commit(session: AsyncSession, key: bytes, entries: Sequence[AuditEntry]) -> None:
    """Append the entries to the chain in the session's transaction, just before it commits
    (after every other lock the transaction takes); a rollback drops them with the change."""
    info = session.sync_session.info
    held: tuple[AsyncSession, bytes, list[AuditEntry]] | None = info.get(_PENDING)
    if held is None:
        held = info[_PENDING] = (session, key, [])
    held[2].extend(entries)


@event.listens_for(Session, "before_commit")
def _append_at_commit(sync_session: Session) -> None:
    held = sync_session.info.pop(_PENDING, None)
    if held is not None and held[2]:
        # What the transaction has not flushed yet goes first (the commit would flush it
        # after this hook, with the chain's lock already held).
        sync_session.flush()
        # Inside the commit's greenlet (AsyncSession.commit): the append runs on the
        # transaction's own connection, as any statement of the session does.
        await_only(record_in_transaction(held[0], held[1], held[2]))


@event.listens_for(Session, "after_transaction_end")
def _drop_uncommitted(sync_session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the transaction ended without committing its entries
        sync_session.info.pop(_PENDING, None)


_CURP = re.compile(r"[A-Z0-9]{18}")


async def record_alike_in_transaction(
    session: AsyncSession, key: bytes, entry: AuditEntry, curps: Sequence[str]
) -> int:
    """One entry per person, each `entry` with that person (a bulk import's chunk: one
    "registered" entry per person it registered), appended in the session's transaction;
    the first seq. The entry is checked once and the chain sealed from one canonical form
    (`audit_chain.seal_alike`); on PostgreSQL the rows go by COPY."""
    if not curps:
        return 0
    for curp in curps:
        if not isinstance(curp, str) or not _CURP.fullmatch(curp):
            raise InvalidInput.on("person_curp", "no es una CURP")
    base = _row_of(entry, utcnow())
    conn = await session.connection()
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"))
    else:
        await locks.sqlite_write_lock(conn, "audit_events", "seq")
    first, chains = seal_alike(base, curps, key, (await conn.execute(_LAST)).first())
    rows = [
        {**base, "seq": first + i, "person_curp": curp, "chain": chain}
        for i, (curp, chain) in enumerate(zip(curps, chains, strict=True))
    ]
    if postgresql:
        await _copy(conn, rows)
    else:
        await conn.execute(insert(AUDIT_TABLE), rows)
    return first


async def _copy(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """COPY sealed rows into the log, within the transaction (COPY takes jsonb as text)."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    records = [
        _COPY_ROW({**row, "detail": orjson.dumps(row["detail"]).decode()})
        if row["detail"] is not None else _COPY_ROW(row)
        for row in rows
    ]  # fmt: skip
    await raw.copy_records_to_table("audit_events", records=records, columns=COLUMNS)
