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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditEntry
from salud.access.audit_tx import record_alike_in_transaction
from salud.access.permissions import Role
from salud.errors import located
from salud.identity import repository
from salud.identity.schemas import PersonCreate
from salud.identity.service import affiliation_values, person_values
from salud.kit.clock import utcnow

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


_NDJSON_CURP = re.compile(rb'"curp"\s*:\s*"([^"\\]{0,40})"')


def _quick_curp(doc: dict[str, Any] | bytes) -> str | None:
    """The CURP of a row without validating it (for duplicate detection across chunks)."""
    if isinstance(doc, bytes):
        found = _NDJSON_CURP.search(doc)
        return found.group(1).decode("utf-8", "replace") if found else None
    value = doc.get("curp")
    return value if isinstance(value, str) else None


@dataclass
class Chunk:
    """Rows validated and ready to write: person tuples, affiliations by CURP, rejects."""

    persons: list[tuple[Any, ...]] = field(default_factory=list)
    affiliations: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    rejects: list[Rejected] = field(default_factory=list)


def validate_rows(
    rows: list[tuple[int, dict[str, Any] | bytes]], actor: str, now: datetime
) -> Chunk:
    chunk = Chunk()
    for line, doc in rows:
        try:
            if isinstance(doc, bytes):
                data = PersonCreate.model_validate_json(doc)
            else:
                data = PersonCreate.model_validate(doc)
        except ValidationError as exc:
            chunk.rejects.append(Rejected(line, _curp_of(doc), _reason(exc)))
            continue
        chunk.persons.append(person_values(data, actor, now))
        if data.affiliations:
            chunk.affiliations[data.curp] = [affiliation_values(a) for a in data.affiliations]
    return chunk


async def write_chunk(
    sessions: async_sessionmaker[AsyncSession], chunk: Chunk, actor: str, audit_key: bytes
) -> int:
    """One transaction: the chunk lands whole or not at all, with one audit entry per person
    it registered (`identity:person:import`, in that person's "who looked at my data").
    Returns persons inserted."""
    if not chunk.persons:
        return 0
    async with sessions() as session, session.begin():
        curps = await repository.bulk_insert(session, chunk.persons, chunk.affiliations)
        entry = AuditEntry(actor=actor, role=Role.CLIENT.value, action="identity:person:import",
                           subject_type="person", purpose="importacion")  # fmt: skip
        await record_alike_in_transaction(session, audit_key, entry, curps)
        return len(curps)


# Worker processes (parallel import): each keeps one event loop and one engine.
_worker: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    # A worker whose importer was killed (kill -9) must not live on: its chunk, if any, was
    # one transaction and is simply not committed.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker_start(database_url: str, parent: int, audit_key: bytes) -> None:
    from salud.storage.engine import create_engine, session_factory

    # The importer's pid comes from the importer itself: a worker still starting when the
    # importer was killed already has init as its parent, and must notice.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()

    loop = asyncio.new_event_loop()
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    _worker.update(loop=loop, sessions=session_factory(engine), audit_key=audit_key)


def _worker_chunk(
    rows: list[tuple[int, dict[str, Any] | bytes]], actor: str, now: datetime
) -> tuple[int, int, list[Rejected]]:
    chunk = validate_rows(rows, actor, now)
    write = write_chunk(_worker["sessions"], chunk, actor, _worker["audit_key"])
    inserted = _worker["loop"].run_until_complete(write)
    return len(chunk.persons), inserted, chunk.rejects


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
) -> ImportReport:
    """Import a file. `workers` > 0 validates and writes in that many processes, each with
    its own connection (PostgreSQL; SQLite has one writer at a time, so use 0 there).
    `actor` names the importer in the audit log; `audit_key` chains its entries."""
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

    def tally(valid: int, inserted: int, rejects: list[Rejected]) -> None:
        report.inserted += inserted
        report.already_present += valid - inserted
        for r in sorted(rejects, key=lambda r: r.line):
            reject(r)
        if progress:
            progress(report.read)

    now = utcnow()
    seen: dict[str, int] = {}
    pending: list[tuple[int, dict[str, Any] | bytes]] = []

    def batches() -> Iterator[list[tuple[int, dict[str, Any] | bytes]]]:
        nonlocal pending
        for line, doc in iter_documents(path, fmt):
            report.read += 1
            if isinstance(doc, str):
                reject(Rejected(line, "", doc))
                continue
            curp = _quick_curp(doc)
            if curp:
                first = seen.get(curp)
                if first is not None:
                    reject(
                        Rejected(line, curp, f"curp: repetida en la línea {first} de este archivo")
                    )
                    continue
                seen[curp] = line
            pending.append((line, doc))
            if len(pending) >= chunk_size:
                yield pending
                pending = []
        if pending:
            yield pending

    try:
        if workers <= 0:
            for rows in batches():
                chunk = validate_rows(rows, actor, now)
                written = await write_chunk(sessions, chunk, actor, audit_key)
                tally(len(chunk.persons), written, chunk.rejects)
        else:
            await _import_parallel(sessions, batches(), workers, actor, audit_key, now, tally)
    finally:
        if text is not None:
            text.flush()
            text.detach()  # leave the caller's stream open
    return report


async def _import_parallel(
    sessions: async_sessionmaker[AsyncSession],
    batches: Iterator[list[tuple[int, dict[str, Any] | bytes]]],
    workers: int,
    actor: str,
    audit_key: bytes,
    now: datetime,
    tally: Callable[[int, int, list[Rejected]], None],
) -> None:
    bind = sessions.kw.get("bind")
    if bind is None:
        raise RuntimeError("the session factory has no engine")
    url = bind.url.render_as_string(hide_password=False)
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_worker_start,
        initargs=(url, os.getpid(), audit_key),
    ) as pool:
        in_flight: deque[asyncio.Future[tuple[int, int, list[Rejected]]]] = deque()
        for rows in batches:
            in_flight.append(loop.run_in_executor(pool, _worker_chunk, rows, actor, now))
            # Results are taken in file order; at most two chunks queue per worker.
            while len(in_flight) >= workers * 2:
                tally(*await in_flight.popleft())
        while in_flight:
            tally(*await in_flight.popleft())
