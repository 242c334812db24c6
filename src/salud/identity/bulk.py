"""Bulk registration from CSV or NDJSON files.

Rows are validated by the same PersonCreate model as the API. Valid rows land in chunks,
each chunk one transaction; a CURP already in the registry is skipped, so re-running a file
(or finishing one whose import was killed midway) adds nothing twice and loses nothing.
Invalid rows go to a rejects file with their line number and the reason.
"""

from __future__ import annotations

import asyncio
import csv
import io
import multiprocessing
import os
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg
import orjson
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditEntry
from salud.access.audit_tx import record_alike_in_transaction
from salud.access.permissions import Role
from salud.errors import located
from salud.identity import repository
from salud.identity.schemas import PersonCreate
from salud.identity.service import (
    UNCHECKED_UNIT,
    UnitLookup,
    affiliation_values,
    person_values,
    unit_problems,
)
from salud.kit.clock import utcnow
from salud.storage import locks

CSV_COLUMNS = (
    "curp",
    "given_names",
    "first_surname",
    "second_surname",
    "birth_date",
    "birth_state",
    "sex",
    "nationality",
    "blood_type",
    "organ_donor",
    "organ_donor_date",
    "phone",
    "email",
    "address_state",
    "address_municipality",
    "address_locality",
    "postal_code",
    "street",
    "assigned_clues",
    "affiliations",
)
# CSV affiliations: "code|member|regime|valid_from|valid_to|status", several joined by ";".
_AFFILIATION_PARTS = (
    "institution_code",
    "member_number",
    "regime",
    "valid_from",
    "valid_to",
    "status",
)


@dataclass
class Rejected:
    line: int
    curp: str
    reason: str


@dataclass
class ImportReport:
    read: int = 0
    inserted: int = 0
    already_present: int = 0
    rejected: int = 0
    rejects: list[Rejected] = field(default_factory=list)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def csv_row_to_document(row: dict[str, str | None]) -> dict[str, Any]:
    unknown = set(row) - set(CSV_COLUMNS)
    if unknown:
        raise ValueError(f"columnas desconocidas: {', '.join(sorted(str(u) for u in unknown))}")
    doc: dict[str, Any] = {
        k: _blank_to_none(row.get(k))
        for k in CSV_COLUMNS
        if not k.startswith("address_") and k not in {"postal_code", "street", "affiliations"}
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    curp = row.get("curp")
    if "curp" in doc and curp is not None:
        doc["curp"] = curp  # as written: a CURP is never trimmed (the model refuses spaces)
    state = _blank_to_none(row.get("address_state"))
    if state is not None:
        doc["address"] = {
            "state": state,
            "municipality": _blank_to_none(row.get("address_municipality")),
            "locality": _blank_to_none(row.get("address_locality")),
            "postal_code": _blank_to_none(row.get("postal_code")),
            "street": _blank_to_none(row.get("street")),
        }
    elif any(_blank_to_none(row.get(k)) for k in ("address_municipality", "address_locality")):
        raise ValueError("address_state: obligatoria si hay municipio o localidad")
    raw_aff = _blank_to_none(row.get("affiliations"))
    if raw_aff:
        affs = []
        for chunk in raw_aff.split(";"):
            parts = chunk.split("|")
            if len(parts) != len(_AFFILIATION_PARTS):
                raise ValueError(
                    "affiliations: use código|número|régimen|desde|hasta|estado separados por ;"
                )
            affs.append(
                {
                    k: v
                    for k, v in zip(_AFFILIATION_PARTS, (p.strip() for p in parts), strict=True)
                    if v
                }
            )
        doc["affiliations"] = affs
    return doc


def iter_documents(
    path: Path, fmt: str | None = None
) -> Iterator[tuple[int, dict[str, Any] | bytes | str]]:
    """(line number, document) for each row, or (line number, reason) when it cannot be read.

    NDJSON lines come as raw bytes: pydantic parses and validates them in one pass."""
    kind = fmt or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
    if kind == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"curp", "given_names", "first_surname"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"al CSV le faltan columnas: {', '.join(sorted(missing))}")
            for row in reader:
                line = reader.line_num
                try:
                    yield line, csv_row_to_document(row)
                except ValueError as exc:
                    yield line, str(exc)
        return
    if kind != "ndjson":
        raise ValueError(f"formato desconocido {kind!r}: use csv o ndjson")
    with path.open("rb") as fh:
        for line, raw in enumerate(fh, start=1):
            if raw.strip():
                yield line, raw


def _curp_of(doc: dict[str, Any] | bytes) -> str:
    if isinstance(doc, bytes):
        try:
            doc = orjson.loads(doc)
        except orjson.JSONDecodeError:
            return ""
        if not isinstance(doc, dict):
            return ""
    return str(doc.get("curp", ""))[:18]


def _reason(exc: ValidationError) -> str:
    found = [
        located(list(err["loc"]), str(err["msg"]), err["type"], err.get("ctx"))
        for err in exc.errors()
    ]
    return "; ".join(f"{p.field}: {p.reason}" for p in found)


# The shape of a CURP (curp.py checks the rest): only a row whose CURP has it can register.
_CURP_SHAPE = re.compile(r"[A-Z]{4}[0-9]{6}[HMX][A-Z]{5}[0-9A-Z][0-9]")


def _quick_curp(doc: dict[str, Any] | bytes) -> str | None:
    """The CURP a row would register under, without validating the row: the value as the
    model reads it (never trimmed: the model refuses spaces), when it has a CURP's shape."""
    if isinstance(doc, bytes):
        try:
            doc = orjson.loads(doc)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
    value = doc.get("curp")
    return value if isinstance(value, str) and _CURP_SHAPE.fullmatch(value) else None


def _repeated(line: int, curp: str, first: int) -> Rejected:
    return Rejected(line, curp, f"curp: repetida en la línea {first} de este archivo")


Row = tuple[int, dict[str, Any] | bytes]
_CLUES_AT = repository.PERSON_COLUMNS.index("assigned_clues")


@dataclass
class Chunk:
    """Rows validated and ready to write: person tuples with their lines, affiliations by
    CURP, rejects."""

    persons: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    affiliations: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    rejects: list[Rejected] = field(default_factory=list)

    def drop(self, refused: dict[int, str]) -> None:
        """Move the persons at these positions to the rejects, with the reason."""
        if not refused:
            return
        kept = [i for i in range(len(self.persons)) if i not in refused]
        self.rejects.extend(
            Rejected(self.lines[i], self.persons[i][0], reason) for i, reason in refused.items()
        )
        self.persons = [self.persons[i] for i in kept]
        self.lines = [self.lines[i] for i in kept]


@dataclass
class ChunkResult:
    """What a chunk came to: the lines that passed every check with their CURP (registered
    now or already present), how many were registered, and the rejects."""

    valid: list[tuple[int, str]]
    inserted: int
    rejects: list[Rejected]


def validate_rows(rows: list[Row], actor: str, now: datetime) -> Chunk:
    """Each row through PersonCreate. A CURP is repeated only when a row with it validated
    before, in file order (a line that was refused registers nothing)."""
    chunk = Chunk()
    seen: dict[str, int] = {}
    for line, doc in sorted(rows, key=lambda r: r[0]):
        try:
            if isinstance(doc, bytes):
                data = PersonCreate.model_validate_json(doc)
            else:
                data = PersonCreate.model_validate(doc)
        except ValidationError as exc:
            chunk.rejects.append(Rejected(line, _curp_of(doc), _reason(exc)))
            continue
        first = seen.get(data.curp)
        if first is not None:
            chunk.rejects.append(_repeated(line, data.curp, first))
            continue
        seen[data.curp] = line
        chunk.persons.append(person_values(data, actor, now))
        chunk.lines.append(line)
        if data.affiliations:
            chunk.affiliations[data.curp] = [affiliation_values(a) for a in data.affiliations]
    return chunk


async def _check_units(
    session: AsyncSession, chunk: Chunk, units: UnitLookup | None, known: dict[str, str | None]
) -> None:
    """Persons whose assigned unit is not a current unit of the catalog are rejects (`known`:
    the reasons found so far in this import, None for a current unit)."""
    keys = {p[_CLUES_AT] for p in chunk.persons if p[_CLUES_AT] is not None}
    unknown = keys - known.keys()
    if unknown:
        found = await units(session, unknown) if units is not None else {}
        reasons = (
            unit_problems(unknown, found)
            if units is not None
            else dict.fromkeys(unknown, UNCHECKED_UNIT)
        )
        known.update({key: reasons.get(key) for key in unknown})
    chunk.drop({
        i: f"assigned_clues: {reason}"
        for i, p in enumerate(chunk.persons)
        if p[_CLUES_AT] is not None and (reason := known[p[_CLUES_AT]]) is not None
    })  # fmt: skip


# What a database says of a row it refuses (a constraint, a value it cannot hold): SQLAlchemy's
# wrappers, and asyncpg's own errors from the COPY, which goes past SQLAlchemy.
_REFUSED: tuple[type[Exception], ...] = (
    IntegrityError, DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError, asyncpg.exceptions.DataError,
)  # fmt: skip


def _refusal(exc: Exception) -> str:
    said = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"la base de datos rechazó la fila: {said[0][:200] if said else type(exc).__name__}"


async def _insert_each(session: AsyncSession, chunk: Chunk) -> list[str]:
    """The chunk once more, halved until each part lands or is one person the database
    refuses (a reject with the reason); the rest land, in the chunk's transaction. A few bad
    rows cost a few savepoints per bad row (log2 of the chunk), not one per row."""
    inserted: list[str] = []
    refused: dict[int, str] = {}

    async def attempt(start: int, end: int) -> None:
        if start >= end:
            return
        part = chunk.persons[start:end]
        try:
            async with session.begin_nested():
                affiliations = {p[0]: chunk.affiliations.get(p[0], []) for p in part}
                inserted.extend(await repository.bulk_insert(session, part, affiliations))
        except _REFUSED as exc:
            if end - start == 1:
                refused[start] = _refusal(exc)
                return
            middle = (start + end) // 2
            await attempt(start, middle)
            await attempt(middle, end)

    middle = len(chunk.persons) // 2  # the whole chunk was refused already: its halves
    await attempt(0, middle)
    await attempt(middle, len(chunk.persons))
    chunk.drop(refused)
    return inserted


async def write_chunk(
    sessions: async_sessionmaker[AsyncSession],
    chunk: Chunk,
    actor: str,
    audit_key: bytes,
    *,
    units: UnitLookup | None = None,
    known_units: dict[str, str | None] | None = None,
) -> int:
    """One transaction: the chunk lands whole or not at all, with one audit entry per person
    it registered (`identity:person:import`, in that person's "who looked at my data").
    Persons whose assigned unit is not current, and any the database refuses, become
    rejects of the chunk (never a failed import). Returns persons inserted."""
    if not chunk.persons:
        return 0
    async with sessions() as session, session.begin():
        if not locks.apart(session):
            # SQLite: the write lock before the look-up of the CURPs present, so that no other
            # import registers one in between (and so that savepoints nest in the transaction).
            await locks.sqlite_write_lock(session, "persons")
        await _check_units(session, chunk, units, {} if known_units is None else known_units)
        if not chunk.persons:
            return 0
        try:
            async with session.begin_nested():
                curps = await repository.bulk_insert(session, chunk.persons, chunk.affiliations)
        except _REFUSED:
            curps = await _insert_each(session, chunk)
        entry = AuditEntry(actor=actor, role=Role.CLIENT.value, action="identity:person:import",
                           subject_type="person", purpose="importacion")  # fmt: skip
        await record_alike_in_transaction(session, audit_key, entry, curps)
        return len(curps)


def _result(chunk: Chunk, inserted: int) -> ChunkResult:
    return ChunkResult(
        list(zip(chunk.lines, (p[0] for p in chunk.persons), strict=True)), inserted, chunk.rejects
    )


# Worker processes (parallel import): each keeps one event loop and one engine.
_worker: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    # A worker whose importer was killed (kill -9) must not live on: its chunk, if any, was
    # one transaction and is simply not committed.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker_start(
    database_url: str, parent: int, audit_key: bytes, units: UnitLookup | None
) -> None:
    from salud.storage.engine import create_engine, session_factory

    # The importer's pid comes from the importer itself: a worker still starting when the
    # importer was killed already has init as its parent, and must notice.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()

    loop = asyncio.new_event_loop()
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    _worker.update(loop=loop, sessions=session_factory(engine), audit_key=audit_key,
                   units=units, known_units={})  # fmt: skip


def _worker_chunk(rows: list[Row], actor: str, now: datetime) -> ChunkResult:
    chunk = validate_rows(rows, actor, now)
    write = write_chunk(
        _worker["sessions"], chunk, actor, _worker["audit_key"],
        units=_worker["units"], known_units=_worker["known_units"],
    )  # fmt: skip
    inserted = _worker["loop"].run_until_complete(write)
    return _result(chunk, inserted)


async def import_file(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    actor: str,
    audit_key: bytes,
    fmt: str | None = None,
    chunk_size: int = 5000,
    rejects_out: BinaryIO | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 0,
    units: UnitLookup | None = None,
) -> ImportReport:
    """Import a file. `workers` > 0 validates and writes in that many processes, each with
    its own connection (PostgreSQL; SQLite has one writer at a time, so use 0 there).
    `actor` names the importer in the audit log; `audit_key` chains its entries. `units`
    tells which assigned units are current (identity.service.UnitLookup, a module-level
    function); without it a row with an assigned unit is a reject."""
    report = ImportReport()
    writer = None
    text: io.TextIOWrapper | None = None
    if rejects_out is not None:
        text = io.TextIOWrapper(rejects_out, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text)
        writer.writerow(["linea", "curp", "motivo"])

    def reject(r: Rejected) -> None:
        report.rejected += 1
        if len(report.rejects) < 1000:
            report.rejects.append(r)
        if writer:
            writer.writerow([r.line, r.curp, r.reason])

    now = utcnow()
    # Repeats are judged on what validated, across chunks that run at once: a line whose CURP
    # is in flight waits for the verdict on it. If it registered (or was present), the lines
    # that waited are repeats of it; if it was refused, they go on together in one chunk,
    # whose own check takes the first of them that validates.
    owner: dict[str, int] = {}  # CURP -> the line that validated with it
    waiting: dict[str, list[Row]] = {}  # CURP in flight -> later lines with it
    pending: list[Row] = []
    pending_curps: set[str] = set()
    in_flight: deque[tuple[Awaitable[ChunkResult], set[str]]] = deque()

    def admit(row: Row) -> None:
        curp = _quick_curp(row[1])
        if curp is None:  # it cannot validate: its own reason will say why
            pending.append(row)
        elif curp in owner:
            reject(_repeated(row[0], curp, owner[curp]))
        elif curp in waiting:
            waiting[curp].append(row)
        else:
            waiting[curp] = []
            pending.append(row)
            pending_curps.add(curp)

    def settle(result: ChunkResult, curps: set[str]) -> None:
        report.inserted += result.inserted
        report.already_present += len(result.valid) - result.inserted
        for r in sorted(result.rejects, key=lambda r: r.line):
            reject(r)
        for line, curp in result.valid:
            owner.setdefault(curp, line)
        for curp in sorted(curps):
            later = waiting.pop(curp, [])
            if curp in owner:
                for line, _ in later:
                    reject(_repeated(line, curp, owner[curp]))
            elif later:
                waiting[curp] = []
                pending.extend(later)
                pending_curps.add(curp)
        if progress:
            progress(report.read)

    async def drive(run: Callable[[list[Row]], Awaitable[ChunkResult]], limit: int) -> None:
        nonlocal pending, pending_curps
        documents = iter_documents(path, fmt)
        exhausted = False
        while True:
            while not exhausted and len(pending) < chunk_size:
                found = next(documents, None)
                if found is None:
                    exhausted = True
                    break
                report.read += 1
                line, doc = found
                if isinstance(doc, str):
                    reject(Rejected(line, "", doc))
                else:
                    admit((line, doc))
            if pending and len(in_flight) < limit:
                in_flight.append((run(pending), pending_curps))
                pending, pending_curps = [], set()
            if in_flight and (len(in_flight) >= limit or exhausted):
                awaitable, curps = in_flight.popleft()
                settle(await awaitable, curps)
            elif exhausted and not pending and not in_flight:
                return

    known_units: dict[str, str | None] = {}

    async def here(rows: list[Row]) -> ChunkResult:
        chunk = validate_rows(rows, actor, now)
        inserted = await write_chunk(
            sessions, chunk, actor, audit_key, units=units, known_units=known_units
        )
        return _result(chunk, inserted)

    try:
        if workers <= 0:
            await drive(here, 1)
        else:
            bind = sessions.kw.get("bind")
            if bind is None:
                raise RuntimeError("the session factory has no engine")
            url = bind.url.render_as_string(hide_password=False)
            loop = asyncio.get_running_loop()
            with ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(url, os.getpid(), audit_key, units),
            ) as pool:
                # Results are taken in file order; at most two chunks queue per worker.
                await drive(
                    lambda rows: loop.run_in_executor(pool, _worker_chunk, rows, actor, now),
                    workers * 2,
                )
    finally:
        if text is not None:
            text.flush()
            text.detach()  # leave the caller's stream open
    return report
