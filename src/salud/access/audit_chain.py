"""The audit log's hash chain: the canonical bytes of an entry, its seal, and verification.

Each entry is sealed with chain = HMAC-SHA256(key, previous chain || canonical bytes of the
entry), so an edited, removed or reordered row breaks the chain from that point on (`verify`).
Whoever can write the database but does not hold the key cannot rebuild a chain that verifies.

The format is a contract of its own, apart from how entries are written: the group-commit
writer (`audit`), the PostgreSQL appender (`audit_postgres`), appends inside a caller's
transaction (`audit_tx`) and `salud audit verify` must all seal the same bytes the same way.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import RowMapping, Table, Text, select
from sqlalchemy import cast as cast_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.models import AuditEvent
from salud.errors import DomainError, InvalidInput

AUDIT_TABLE: Table = AuditEvent.__table__  # type: ignore[assignment]
# The fields sealed by the chain, in table order: every column but the chain itself.
SEALED_FIELDS: tuple[str, ...] = tuple(c.name for c in AUDIT_TABLE.columns if c.name != "chain")
GENESIS = "0" * 64
_INT64 = 2**63
# The last entry of the log (seq, chain): a batch is sealed after it.
_LAST = select(AUDIT_TABLE.c.seq, AUDIT_TABLE.c.chain).order_by(AUDIT_TABLE.c.seq.desc()).limit(1)


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None  # in Spanish, for the operator
    last_chain: str | None = None  # the chain of the last entry checked: the next anchor


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
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput.on(where, "no es texto Unicode válido") from None


def _iso(at: Any) -> str:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise ValueError("`at` must be a timezone-aware datetime")
    moment: datetime = at if at.tzinfo is UTC else at.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


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


# Where seq sits in the canonical bytes: keys are sorted, and the key after "seq" is
# "subject_id", always present (a value inside a string cannot hold an unescaped quote).
_SEQ_MARK = b',"seq":0,"subject_id":'


def presealed(row: dict[str, Any]) -> tuple[bytes, bytes]:
    """The row's canonical bytes around its seq, computed before its seq is known: so that a
    large batch (a bulk import's chunk) does the costly part before taking the chain's lock,
    and only the HMAC under it (`_seal_presealed`)."""
    head, mark, tail = canonical_bytes({**row, "seq": 0}).rpartition(_SEQ_MARK)
    if not mark:
        raise ValueError("canonical bytes without seq")
    return head + b',"seq":', b',"subject_id":' + tail


def _seal_presealed(
    rows: list[dict[str, Any]], parts: Sequence[tuple[bytes, bytes]], key: bytes,
    last: Sequence[Any] | None,
) -> int:  # fmt: skip
    """As `_seal`, from `presealed` parts: the same chain, byte for byte."""
    seq, previous = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS)
    first = seq + 1
    for row, (head, tail) in zip(rows, parts, strict=True):
        seq += 1
        row["seq"] = seq
        message = b"".join((previous.encode("ascii"), head, str(seq).encode("ascii"), tail))
        previous = row["chain"] = hmac.digest(key, message, "sha256").hex()
    return first


_CURP_KEY = b'"person_curp":"'
_CURP_STANDIN = "CURP-AUN-POR-PONER"  # 18 characters, no quote: never a CURP


def seal_alike(
    row: dict[str, Any], curps: Sequence[str], key: bytes, last: Sequence[Any] | None
) -> tuple[int, list[str]]:
    """Seal one entry per CURP, all as `row` but for the person: (first seq, the chains).
    The same chain `_seal` gives those rows, byte for byte (a property test checks it), from
    one canonical form of `row` instead of one per row: a bulk import's chunk records
    thousands of such entries, and the HMAC is all that is left per row."""
    head, tail = presealed({**row, "person_curp": _CURP_STANDIN})
    # The last "person_curp" key is the entry's own (one in `detail` sorts before it, and
    # the keys after it hold strings, which cannot hold an unescaped quote).
    before, mark, after = head.rpartition(_CURP_KEY + _CURP_STANDIN.encode() + b'"')
    if not mark:
        raise ValueError("canonical bytes without person_curp")
    seq, previous = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS)
    first, chains = seq + 1, []
    for curp in curps:
        seq += 1
        message = b"".join((previous.encode("ascii"), before, _CURP_KEY, curp.encode("ascii"),
                            b'"', after, str(seq).encode("ascii"), tail))  # fmt: skip
        previous = hmac.digest(key, message, "sha256").hex()
        chains.append(previous)
    return first, chains


def _seal(rows: list[dict[str, Any]], key: bytes, last: Sequence[Any] | None) -> int:
    """Number rows after the last entry (seq, chain) and chain them; the seq of the first."""
    seq, previous = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS)
    first = seq + 1
    for row in rows:
        seq += 1
        row["seq"] = seq
        previous = row["chain"] = chain_of(key, previous, row)
    return first


# --- verification ------------------------------------------------------------------------

_VERIFY_CHUNK = 5000


async def _fetch_chunk(
    sessions: async_sessionmaker[AsyncSession], after: int | None, limit: int
) -> Sequence[RowMapping]:
    # `detail` also as the text stored: SQLite keeps what was written, and its JSON reader
    # forgives what an edit can hide behind (a repeated key, NaN, 1e400), see _well_formed.
    stored = cast_(AUDIT_TABLE.c.detail, Text).label("detail_text")
    stmt = select(AUDIT_TABLE, stored).order_by(AUDIT_TABLE.c.seq).limit(limit)
    if after is not None:
        stmt = stmt.where(AUDIT_TABLE.c.seq > after)
    async with sessions() as session:
        return (await session.execute(stmt)).mappings().all()


def _well_formed(text: str | None) -> bool:
    """Whether a stored `detail` is JSON as the log writes it: no key twice in an object, no
    NaN or infinity. A reader keeps the last of two keys and turns a non-finite number into
    null on the way to the canonical bytes, so such an edit would otherwise seal as the
    original did (SQLite; PostgreSQL's jsonb refuses or normalizes them)."""
    if text is None:
        return True

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("repeated key")
        return dict(pairs)

    def finite(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            raise ValueError("not finite")
        return value

    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        json.loads(text, object_pairs_hook=unique, parse_float=finite, parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    return True


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
    anchor: tuple[int, str] | None = None,
) -> VerifyResult:
    """Walk the whole log in seq order (keyset chunks, constant memory) and name the first
    entry that was edited, removed or moved. An empty log is intact. A log cut short at its
    end is still a valid chain: that is what `anchor` catches, an entry's (seq, chain) kept
    elsewhere (the last one of an earlier verification): it must still be there, unchanged."""
    result = await _walk(sessions, key, progress)
    if anchor is None or not result.ok:
        return result
    seq, chain = anchor
    if result.checked < seq:
        problem = (f"faltan entradas al final: la bitácora termina en la {result.checked} y el "
                   f"ancla es la {seq}")  # fmt: skip
        return VerifyResult(False, result.checked, result.checked + 1, problem, result.last_chain)
    async with sessions() as session:
        stored = (
            await session.execute(select(AUDIT_TABLE.c.chain).where(AUDIT_TABLE.c.seq == seq))
        ).scalar_one_or_none()
    if stored is None or not hmac.compare_digest(str(stored).encode(), chain.encode()):
        problem = f"la entrada {seq} no es la del ancla: la bitácora fue reescrita desde ahí"
        return VerifyResult(False, seq - 1, seq, problem, result.last_chain)
    return result


async def _walk(
    sessions: async_sessionmaker[AsyncSession], key: bytes,
    progress: Callable[[int], None] | None,
) -> VerifyResult:  # fmt: skip
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
            return VerifyResult(True, expected - 1, None, None, None if expected == 1 else previous)
        for row in rows:
            seq = int(row["seq"])
            if seq > expected:  # the first bad entry is the one missing
                problem = f"falta la entrada {expected} (se encontró la {seq})"
                return VerifyResult(False, expected - 1, expected, problem)
            if seq < expected:
                problem = f"la entrada {seq} tiene un número inválido (se esperaba {expected})"
                return VerifyResult(False, expected - 1, seq, problem)
            stored = str(row["chain"])
            try:
                computed = chain_of(key, previous, cast(Mapping[str, Any], row))
            except (ValueError, TypeError, OverflowError, DomainError):
                computed = ""
            if not _well_formed(row["detail_text"]):
                computed = ""  # edited into a form the log never writes
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
