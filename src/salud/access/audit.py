"""The audit trail: append-only, hash-chained, written by group commit.

NOM-024-SSA3-2012 asks that every access to and change of personal or clinical data leave a
trace of who, with which role, where, what, when, why and with what outcome. Services report
an `AuditEntry`; `AuditLog` appends it to the log, where a hash chain exposes any edited,
removed or reordered row; `events_for_person` and `events` read the log back. The chain itself
(canonical bytes, seal, `verify`) is in `audit_chain` and the PostgreSQL appender in
`audit_postgres`; the names of theirs that callers import from here are re-exported.

A read of a person must not be answered before its audit row is durable, yet one transaction
per read would halve the throughput. So `record` queues the entry and waits; one writer task
takes what is pending (up to `max_batch`, waiting at most `max_delay` after the oldest) and
writes it in ONE transaction, then answers every waiter with its sequence number. Appends are
serialized across processes by a lock held for the transaction (PostgreSQL advisory lock,
SQLite write lock), so two processes can never fork the chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from salud.access.audit_chain import (
    _LAST,
    AUDIT_TABLE,
    GENESIS,
    SEALED_FIELDS,
    VerifyResult,
    _check_text,
    _plain,
    _seal,
    canonical_bytes,
    chain_of,
    verify,
)
from salud.access.audit_postgres import _PG_LOCK, ADVISORY_LOCK_KEY, _PostgresAppender
from salud.access.models import AuditEvent
from salud.errors import DomainError, InvalidInput
from salud.kit.clock import utcnow

# The public names, and the ones (private included) that moved to audit_chain and
# audit_postgres but that audit_tx, the CLI and tests import from this module.
__all__ = [
    "ADVISORY_LOCK_KEY",
    "AUDIT_TABLE",
    "GENESIS",
    "OUTCOMES",
    "SEALED_FIELDS",
    "_LAST",
    "AuditEntry",
    "AuditLog",
    "AuditUnavailable",
    "VerifyResult",
    "_seal",
    "canonical_bytes",
    "chain_of",
    "events",
    "events_for_person",
    "verify",
]

OUTCOMES = frozenset({"success", "denied", "not_found", "error"})

_TEXT_LIMITS: dict[str, int] = {
    c.name: int(getattr(c.type, "length", 0) or 0)
    for c in AUDIT_TABLE.columns
    if c.name != "chain" and getattr(c.type, "length", None) is not None
}
_REQUIRED = frozenset({"actor", "role", "action", "subject_type", "outcome"})
_SMALLINT = range(-(2**15), 2**15)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What a service reports about one access. `action` is `domain:subject:verb`."""

    actor: str
    role: str
    action: str
    subject_type: str
    outcome: str = "success"
    institution_code: int | None = None
    clues: str | None = None
    person_curp: str | None = None
    subject_id: str | None = None
    purpose: str | None = None
    reason: str | None = None  # break-the-glass justification
    detail: dict[str, Any] | None = None


class AuditUnavailable(DomainError):
    """The entry could not be written: the access it describes must not be served."""

    def __init__(self) -> None:
        super().__init__(
            "No se pudo registrar el acceso en la bitácora de auditoría; intente de nuevo.",
            [],
            503,
            "Servicio no disponible",
            "audit-unavailable",
        )


def _row_of(entry: AuditEntry, at: datetime) -> dict[str, Any]:
    """The row to insert (seq and chain come at write time), checked against the table."""
    row: dict[str, Any] = {
        "seq": 0,
        "at": at,
        "actor": entry.actor,
        "role": entry.role,
        "institution_code": entry.institution_code,
        "clues": entry.clues,
        "action": entry.action,
        "subject_type": entry.subject_type,
        "person_curp": entry.person_curp,
        "subject_id": entry.subject_id,
        "purpose": entry.purpose,
        "reason": entry.reason,
        "outcome": entry.outcome,
        "detail": None if entry.detail is None else _plain(entry.detail, "detail", True),
    }
    for name, limit in _TEXT_LIMITS.items():
        value = row[name]
        if value is None:
            if name in _REQUIRED:
                raise InvalidInput.on(name, "es obligatorio")
            continue
        if not isinstance(value, str):
            raise InvalidInput.on(name, "debe ser texto")
        if name in _REQUIRED and not value:
            raise InvalidInput.on(name, "es obligatorio")
        if len(value) > limit:
            raise InvalidInput.on(name, f"es demasiado largo (máximo {limit})")
        _check_text(value, name)
    if entry.outcome not in OUTCOMES:
        raise InvalidInput.on("outcome", f"debe ser uno de: {', '.join(sorted(OUTCOMES))}")
    code = entry.institution_code
    if code is not None and (isinstance(code, bool) or code not in _SMALLINT):
        raise InvalidInput.on("institution_code", "no es una clave de institución válida")
    if entry.detail is not None and not isinstance(entry.detail, dict):
        raise InvalidInput.on("detail", "debe ser un objeto JSON")
    return row


# --- the writer --------------------------------------------------------------------------


class _Pending:
    __slots__ = ("arrived", "future", "rows")

    def __init__(
        self, rows: list[dict[str, Any]], future: asyncio.Future[int], arrived: float
    ) -> None:
        self.rows = rows
        self.future = future  # resolves to the seq of rows[0]; the others follow it
        self.arrived = arrived


async def _append_in_session(
    sessions: async_sessionmaker[AsyncSession], rows: list[dict[str, Any]], key: bytes
) -> int:
    """One transaction through SQLAlchemy: SQLite, the embedded development database (and
    PostgreSQL when the sessions are not bound to an engine of their own)."""
    async with sessions() as session:
        conn = await session.connection()
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql(_PG_LOCK)
        elif conn.dialect.name == "sqlite":
            # A deferred transaction would read the last entry under a shared lock, and two
            # processes could both append after it. IMMEDIATE takes the write lock before the
            # read (waiting up to busy_timeout for the other writer).
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            raise RuntimeError(f"audit log: unsupported database {conn.dialect.name}")
        first = _seal(rows, key, (await conn.execute(_LAST)).first())
        await conn.execute(insert(AUDIT_TABLE), rows)
        await session.commit()
    return first


class AuditLog:
    """Durable, chained audit records with group commit. One per process (app lifespan)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        key: bytes,
        *,
        max_batch: int = 500,
        max_delay: float = 0.0,
    ) -> None:
        if not key:
            raise ValueError("the audit key is empty")
        if max_batch < 1 or max_delay < 0:
            raise ValueError("max_batch must be >= 1 and max_delay >= 0")
        self._sessions = sessions
        self._key = key
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._pending: list[_Pending] = []
        self._queued = 0  # entries in _pending
        self._in_flight: list[_Pending] = []
        self._wake = asyncio.Event()  # something is pending, or close() was called
        self._hurry = asyncio.Event()  # a full batch is pending, or close() was called
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._postgres: _PostgresAppender | None = None

    @property
    def key(self) -> bytes:
        """The chain's HMAC key, for appends made inside a caller's own transaction."""
        return self._key

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("AuditLog already started")
        self._closing = False
        bind = self._sessions.kw.get("bind")
        if isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql":
            self._postgres = _PostgresAppender(bind)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")
        self._task.add_done_callback(self._writer_ended)

    async def close(self) -> None:
        """Write everything already queued, then stop the writer."""
        task = self._task
        if task is None:
            return
        self._closing = True
        self._wake.set()
        self._hurry.set()
        try:
            await task
        finally:
            self._task = None
            if self._postgres is not None:
                await self._postgres.dispose()
                self._postgres = None

    async def record(self, entry: AuditEntry) -> int:
        """Write one entry; return its seq once it is committed. InvalidInput for an entry
        the table cannot hold; AuditUnavailable (503) if the write failed."""
        return await self._submit([_row_of(entry, utcnow())])

    async def record_many(self, entries: Sequence[AuditEntry]) -> list[int]:
        """Write entries together (contiguous seqs, one transaction); their seqs in order."""
        if not entries:
            return []
        at = utcnow()
        first = await self._submit([_row_of(e, at) for e in entries])
        return list(range(first, first + len(entries)))

    async def _submit(self, rows: list[dict[str, Any]]) -> int:
        task = self._task
        if task is None or self._closing:
            raise RuntimeError("el registro de auditoría no está en marcha")
        if task.done():
            raise RuntimeError("el escritor del registro de auditoría se detuvo")
        loop = asyncio.get_running_loop()
        item = _Pending(rows, loop.create_future(), loop.time())
        self._pending.append(item)
        self._queued += len(rows)
        self._wake.set()
        if self._queued >= self._max_batch:
            self._hurry.set()
        return await item.future

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        count = 0
        for item in self._pending:
            if batch and count + len(item.rows) > self._max_batch:
                break
            batch.append(item)
            count += len(item.rows)
        del self._pending[: len(batch)]
        self._queued -= count
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = self._pending[0].arrived + self._max_delay - loop.time()
            if delay > 0 and self._queued < self._max_batch and not self._closing:
                # Group commit: let the requests arriving meanwhile share this transaction.
                self._hurry.clear()
                try:
                    async with asyncio.timeout(delay):
                        await self._hurry.wait()
                except TimeoutError:
                    pass
            batch = self._in_flight = self._take_batch()
            try:
                first = await self._write([row for item in batch for row in item.rows])
            except Exception as exc:
                # Not audited means not served: every waiter of this batch gets the error.
                for item in batch:
                    if not item.future.done():
                        failure = AuditUnavailable()
                        failure.__cause__ = exc
                        item.future.set_exception(failure)
            else:
                for item in batch:
                    if not item.future.done():  # its caller may have been cancelled
                        item.future.set_result(first)
                    first += len(item.rows)
            finally:
                self._in_flight = []

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        # Normally the writer ends only when everything is written. If it was cancelled or
        # crashed, nobody may be left waiting forever.
        stranded = self._in_flight + self._pending
        self._in_flight, self._pending, self._queued = [], [], 0
        for item in stranded:
            if not item.future.done():
                item.future.set_exception(AuditUnavailable())

    async def _write(self, rows: list[dict[str, Any]]) -> int:
        """Append rows in one transaction; the seq of the first."""
        if self._postgres is not None:
            return await self._postgres.append(rows, self._key)
        return await _append_in_session(self._sessions, rows, self._key)


# --- reading -----------------------------------------------------------------------------


async def events_for_person(
    session: AsyncSession, curp: str, *, limit: int = 50, before_seq: int | None = None,
    actor: str | None = None,
) -> Sequence[AuditEvent]:  # fmt: skip
    """Who touched this person's data (or only `actor`'s entries), newest first (page on
    with before_seq)."""
    stmt = select(AuditEvent).where(AuditEvent.person_curp == curp)
    if actor is not None:
        stmt = stmt.where(AuditEvent.actor == actor)
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    stmt = stmt.order_by(AuditEvent.seq.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def events(
    session: AsyncSession,
    *,
    limit: int = 100,
    before_seq: int | None = None,
    actor: str | None = None,
    action: str | None = None,
) -> Sequence[AuditEvent]:
    """The log newest first, optionally only one actor's or one action's entries."""
    stmt = select(AuditEvent)
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    if actor is not None:
        stmt = stmt.where(AuditEvent.actor == actor)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    stmt = stmt.order_by(AuditEvent.seq.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()
