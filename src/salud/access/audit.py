"""The audit trail: append-only, hash-chained, written by group commit.

NOM-024-SSA3-2012 asks that every access to and change of personal or clinical data leave a
trace of who, with which role, where, what, when, why and with what outcome. Each entry is
sealed with chain = HMAC-SHA256(key, previous chain || canonical bytes of the entry), so an
edited, removed or reordered row breaks the chain from that point on (`verify`). Whoever can
write the database but does not hold the key cannot rebuild a chain that verifies.

A read of a person must not be answered before its audit row is durable, yet one transaction
per read would halve the throughput. So `record` queues the entry and waits; one writer task
takes what is pending (up to `max_batch`, waiting at most `max_delay` after the oldest) and
writes it in ONE transaction, then answers every waiter with its sequence number. Appends are
serialized across processes by a lock held for the transaction (PostgreSQL advisory lock,
SQLite write lock), so two processes can never fork the chain.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import RowMapping, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from salud.access.models import AuditEvent
from salud.errors import DomainError, InvalidInput
from salud.kit.clock import utcnow

AUDIT_TABLE: Table = AuditEvent.__table__  # type: ignore[assignment]
# The fields sealed by the chain, in table order: every column but the chain itself.
SEALED_FIELDS: tuple[str, ...] = tuple(c.name for c in AUDIT_TABLE.columns if c.name != "chain")
GENESIS = "0" * 64
OUTCOMES = frozenset({"success", "denied", "not_found", "error"})
# Key of the PostgreSQL advisory lock that serializes appends ("saludAud" as a signed int64).
ADVISORY_LOCK_KEY = int.from_bytes(b"saludAud", "big", signed=True)

_TEXT_LIMITS: dict[str, int] = {
    c.name: int(getattr(c.type, "length", 0) or 0)
    for c in AUDIT_TABLE.columns
    if c.name != "chain" and getattr(c.type, "length", None) is not None
}
_REQUIRED = frozenset({"actor", "role", "action", "subject_type", "outcome"})
_SMALLINT = range(-(2**15), 2**15)
_INT64 = 2**63


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


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None  # in Spanish, for the operator


# --- canonical bytes and the chain -------------------------------------------------------


def _plain(value: Any, where: str, strict: bool) -> Any:
    """`detail` as plain JSON whose canonical bytes survive the trip through either backend.

    PostgreSQL's jsonb keeps numbers as `numeric`: 1.0 comes back as 1.0 but 1e20 as the
    integer 100000000000000000000. So integral numbers within int64 are ints and the others
    floats, on the way in and at verification alike. `strict` (recording) refuses what a
    backend would refuse or alter; at verification the stored value is taken as it is."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if strict:
            _check_text(value, where)
        return value
    if isinstance(value, int):
        if -_INT64 <= value < _INT64:
            return value
        if strict:
            raise InvalidInput.on(where, "número fuera del intervalo de 64 bits")
        return float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            if strict:
                raise InvalidInput.on(where, "número no finito (NaN o infinito)")
            return value
        if value.is_integer() and -_INT64 <= value < _INT64:
            return int(value)
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]", strict) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput.on(where, f"las claves deben ser texto, no {k!r}")
            out[k] = _plain(v, f"{where}.{k}", strict)
        return out
    raise InvalidInput.on(where, f"tipo no admitido en JSON: {type(value).__name__}")


def _check_text(value: str, where: str) -> None:
    # PostgreSQL refuses NUL and unpaired surrogates in text and jsonb: refuse them here, so
    # one bad entry cannot fail the transaction of the whole batch it was grouped with.
    if "\x00" in value:
        raise InvalidInput.on(where, "contiene el carácter nulo")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput.on(where, "no es texto Unicode válido") from None


def _iso(at: Any) -> str:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise ValueError("`at` must be a timezone-aware datetime")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_bytes(event: Mapping[str, Any]) -> bytes:
    """The sealed form of an entry: a JSON object of SEALED_FIELDS with sorted keys (at every
    depth), no spaces, UTF-8; `at` as ISO 8601 UTC with microseconds
    ("2026-11-23T16:35:38.789566+00:00"); absent values as null."""
    doc = {name: event[name] for name in SEALED_FIELDS}
    doc["at"] = _iso(doc["at"])
    doc["detail"] = _plain(doc["detail"], "detail", strict=False)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def chain_of(key: bytes, previous: str, event: Mapping[str, Any]) -> str:
    """HMAC-SHA256(key, previous chain as 64 hex ASCII characters || canonical bytes), hex."""
    message = previous.encode("ascii") + canonical_bytes(event)
    return hmac.digest(key, message, "sha256").hex()


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


def _seal(rows: list[dict[str, Any]], key: bytes, last: Sequence[Any] | None) -> int:
    """Number rows after the last entry (seq, chain) and chain them; the seq of the first."""
    seq, previous = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS)
    first = seq + 1
    for row in rows:
        seq += 1
        row["seq"] = seq
        previous = row["chain"] = chain_of(key, previous, row)
    return first


# Held until commit; every appender of every process takes it before reading the last entry.
_PG_LOCK = f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"
_LAST = select(AUDIT_TABLE.c.seq, AUDIT_TABLE.c.chain).order_by(AUDIT_TABLE.c.seq.desc()).limit(1)


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


_COLUMNS = (*SEALED_FIELDS, "chain")
_PG_BEGIN = f"BEGIN; {_PG_LOCK}"
_PG_LAST = "SELECT seq, chain FROM audit_events ORDER BY seq DESC LIMIT 1"
# The whole batch as one statement: one array per column (jsonb travels as text). It takes
# the advisory lock itself before its first row, so that even the one-statement path cannot
# slip a row in between the read and the insert of a writer holding the lock.
_PG_ARRAYS = {"seq": "bigint", "at": "timestamptz", "institution_code": "smallint"}
_PG_INSERT = (
    f"WITH chain_lock AS MATERIALIZED ({_PG_LOCK}) "  # noqa: S608 (fixed names only)
    f"INSERT INTO audit_events ({', '.join(_COLUMNS)}) SELECT "
    + ", ".join(f"batch.{c}::jsonb" if c == "detail" else f"batch.{c}" for c in _COLUMNS)
    + " FROM unnest("
    + ", ".join(f"${i}::{_PG_ARRAYS.get(c, 'text')}[]" for i, c in enumerate(_COLUMNS, 1))
    + f") AS batch({', '.join(_COLUMNS)}) CROSS JOIN chain_lock"
)
_UNIQUE_VIOLATION = "23505"
# After another writer was found appending too (another process, or an append inside a
# caller's transaction), how long to take the locked path every time. Each collision costs a
# round trip and a "duplicate key" line in the server log; the locked path costs 3 more.
_CONTENDED_SECONDS = 5.0


def _arrays(rows: list[dict[str, Any]]) -> list[list[Any]]:
    columns: list[list[Any]] = [[row[c] for row in rows] for c in _COLUMNS]
    detail = _COLUMNS.index("detail")
    columns[detail] = [None if d is None else orjson.dumps(d).decode() for d in columns[detail]]
    return columns


class _PostgresAppender:
    """Appends on one connection the writer keeps, straight through asyncpg.

    Usually in ONE round trip: the writer remembers the last entry it committed, seals the
    batch after it and inserts it as one autocommitted statement (which takes the advisory
    lock itself). If another process has appended since, seq last+1 exists and the primary
    key refuses the whole statement: nothing was written, and the batch is resealed on the
    locked path (begin + lock, read the last entry, insert, commit: four round trips). The
    primary key is what makes the short path safe: each seq can be taken once, and a batch is
    chained only to the entry just before its first seq. After such a collision the locked
    path is kept for a while, so that processes appending side by side do not keep colliding.

    Measured on the project machine: about 0.15 ms of CPU per batch on the short path,
    0.35 ms on the locked one, 1.2 ms through an ORM session."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._last: tuple[int, str] | None = None  # last entry this writer committed
        self._contended_until = 0.0

    async def append(self, rows: list[dict[str, Any]], key: bytes) -> int:
        driver = await self._driver()
        last, self._last = self._last, None  # unknown until this batch is committed
        try:
            if last is not None and time.monotonic() >= self._contended_until:
                first = _seal(rows, key, last)
                try:
                    await driver.execute(_PG_INSERT, *_arrays(rows))
                except Exception as exc:
                    if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                        raise
                    self._contended_until = time.monotonic() + _CONTENDED_SECONDS
                else:
                    self._last = (rows[-1]["seq"], rows[-1]["chain"])
                    return first
            await driver.execute(_PG_BEGIN)
            first = _seal(rows, key, await driver.fetchrow(_PG_LAST))
            await driver.execute(_PG_INSERT, *_arrays(rows))
            await driver.execute("COMMIT")
        except BaseException:
            # Whatever state the transaction is in, this connection is not reused.
            await self.release(broken=True)
            raise
        self._last = (rows[-1]["seq"], rows[-1]["chain"])
        return first

    async def _driver(self) -> Any:
        if self._conn is not None:
            driver = (await self._conn.get_raw_connection()).driver_connection
            if driver is not None and not driver.is_closed():
                return driver
            await self.release(broken=True)  # the server closed it (restart, idle timeout)
        self._conn = await self._engine.connect()
        return (await self._conn.get_raw_connection()).driver_connection

    async def release(self, *, broken: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if broken:
            await conn.invalidate()
        await conn.close()


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
                await self._postgres.release()

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


# --- verification ------------------------------------------------------------------------

_VERIFY_CHUNK = 5000


async def _fetch_chunk(
    sessions: async_sessionmaker[AsyncSession], after: int | None, limit: int
) -> Sequence[RowMapping]:
    stmt = select(AUDIT_TABLE).order_by(AUDIT_TABLE.c.seq).limit(limit)
    if after is not None:
        stmt = stmt.where(AUDIT_TABLE.c.seq > after)
    async with sessions() as session:
        return (await session.execute(stmt)).mappings().all()


async def _first_unreadable(
    sessions: async_sessionmaker[AsyncSession], after: int | None, limit: int
) -> int:
    """The seq of the row of a chunk that could not even be decoded (e.g. a date edited into
    text that is no date): re-read the chunk one row at a time."""
    stmt = select(AUDIT_TABLE.c.seq).order_by(AUDIT_TABLE.c.seq).limit(limit)
    if after is not None:
        stmt = stmt.where(AUDIT_TABLE.c.seq > after)
    async with sessions() as session:
        seqs = list((await session.execute(stmt)).scalars())
    for seq in seqs:
        try:
            await _fetch_chunk(sessions, seq - 1, 1)
        except (ValueError, TypeError):
            return int(seq)
    raise RuntimeError("the audit log changed while it was being verified")


async def verify(
    sessions: async_sessionmaker[AsyncSession],
    key: bytes,
    *,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Walk the whole log in seq order (keyset chunks, constant memory) and name the first
    entry that was edited, removed or moved. An empty log is intact. A log cut short at its
    end stays a valid chain: compare `checked` with a count kept elsewhere to catch that."""
    previous = GENESIS
    expected = 1
    after: int | None = None
    while True:
        try:
            rows = await _fetch_chunk(sessions, after, _VERIFY_CHUNK)
        except (ValueError, TypeError):
            seq = await _first_unreadable(sessions, after, _VERIFY_CHUNK)
            return VerifyResult(False, expected - 1, seq, f"la entrada {seq} tiene datos ilegibles")
        if not rows:
            return VerifyResult(True, expected - 1, None, None)
        for row in rows:
            seq = int(row["seq"])
            if seq > expected:
                problem = f"falta la entrada {expected} (se encontró la {seq})"
                return VerifyResult(False, expected - 1, seq, problem)
            if seq < expected:
                problem = f"la entrada {seq} tiene un número inválido (se esperaba {expected})"
                return VerifyResult(False, expected - 1, seq, problem)
            stored = str(row["chain"])
            try:
                computed = chain_of(key, previous, cast(Mapping[str, Any], row))
            except (ValueError, TypeError, OverflowError, DomainError):
                computed = ""
            if not hmac.compare_digest(computed.encode(), stored.encode("utf-8", "replace")):
                problem = (
                    f"la entrada {seq} fue modificada o cambiada de lugar "
                    "(su sello no corresponde a su contenido ni a la entrada anterior)"
                )
                return VerifyResult(False, expected - 1, seq, problem)
            previous = stored
            expected += 1
        after = expected - 1
        if progress is not None:
            progress(expected - 1)


# --- reading -----------------------------------------------------------------------------


async def events_for_person(
    session: AsyncSession, curp: str, *, limit: int = 50, before_seq: int | None = None
) -> Sequence[AuditEvent]:
    """Who touched this person's data, newest first (page on with before_seq)."""
    stmt = select(AuditEvent).where(AuditEvent.person_curp == curp)
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
