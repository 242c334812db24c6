"""Audit entries written inside the caller's own transaction.

A change of personal data and its audit entry commit together or not at all (one write, one
transaction). It also avoids a deadlock on SQLite, where the request's transaction holds the
only write lock while the group-commit writer would wait for it. Reads keep the group commit
(`AuditLog.record`), which costs them far less."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.audit import AuditEntry, _row_of
from salud.access.audit_chain import _LAST, AUDIT_TABLE, _seal
from salud.access.audit_postgres import ADVISORY_LOCK_KEY
from salud.kit.clock import utcnow


async def record_in_transaction(
    session: AsyncSession, key: bytes, entries: Sequence[AuditEntry]
) -> int:
    """Append the entries to the chain within the session's transaction; the first seq."""
    now = utcnow()
    rows = [_row_of(entry, now) for entry in entries]
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        # Held until this transaction ends: appends stay serialized across processes.
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"))
    first = _seal(rows, key, (await conn.execute(_LAST)).first())
    await conn.execute(insert(AUDIT_TABLE), rows)
    return first
