"""Bulk import of FHIR resources from NDJSON (one resource per line): `salud records import`.

Each line is checked exactly as an interactive write checks it (records/validation.py: the
R4B model, then our rules; records/compartment.py: whose record it is) and stored in the
same tables in the same way (records/bulk_repository.py: the current row, the earlier
version when it changes, the index rows from records/indexing.py, the person as partition
key, the sensitive categories, `meta` with the writing institution and unit).

- Chunks: the lines of a chunk are one transaction, with their audit entries. A rejected line
  does not stop its chunk: it goes to the rejects file (`FILE.rechazos.ndjson`: line,
  resource, reason) and the rest of the chunk is written.
- Idempotent where a line carries its id: a resource already stored with the same content
  (apart from the server's `meta`) is left alone; with other content it gets a new version,
  unless the stored one was changed through the API since an import wrote it (a clinician's
  correction: the import's own line again is left alone, other data refused; or a delete:
  a re-run does not undo either) or is an entry the person
  restricted to the institution that recorded it and the importer is of another (the API's
  rule: refused, and recorded as denied on the person's record). A line without an id is a
  new resource each time (the server assigns the id), so such a file is not safe to re-run.
  The file is applied in order: a later line with the same type and id is a new version.
- References: a reference must name a resource already stored, a registered person, or a
  resource of the same chunk (a file should list the resources others point at first: an
  `$export`'s Patient file before the others). A reference to nothing refuses the line with
  the reason, as an interactive write does; with `lenient` the line is stored and each such
  reference is written to `FILE.sin-destino.ndjson` and counted in the report instead.
- Organization, Location and Coverage with the mirror's own ids (`inst-…`, a CLUES key,
  `CURP-code…`) are the registry's and the catalogs' (records/mirror.py): refused; other ids
  of these types are kept, as the mirror expects of bulk loads.
- Patient: a line whose id is a CURP is rejected (that person belongs in the registry:
  `salud persons import`); any other Patient is kept in the store as a Patient outside the
  registry, its own record's partition (see docs/fhir.md).
- Audit: one entry per person per chunk (`records:bulk:import`, with the counts and the
  first and last of the person's lines), and one per chunk for the resources that belong to
  nobody's record.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditEntry
from salud.access.audit_tx import record_in_transaction
from salud.access.context import Caller
from salud.access.permissions import Permission, Role
from salud.access.scopes import allows
from salud.kit import exactjson
from salud.kit.clock import utcnow
from salud.records import bulk_repository, mirror, service
from salud.records.bulk_repository import Existing
from salud.records.compartment import partition
from salud.records.indexing import Index, index, local_references, unresolved_references
from salud.records.outcome import FhirError
from salud.records.sensitivity import stored_form
from salud.records.validation import parse, validate

IMPORTER_PREFIX = "importacion:"  # an importer's name: what the versions it writes name
REJECTS_SUFFIX = ".rechazos.ndjson"
DANGLING_SUFFIX = ".sin-destino.ndjson"
ACTION = "records:bulk:import"
_KEPT = 1000  # rejects and dangling references kept in the report (all go to the files)
_SERVER_META = frozenset({"versionId", "lastUpdated", "source"})


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    resource: str  # "Type/id", or "" when the line could not be read that far
    reason: str


@dataclass(frozen=True, slots=True)
class Dangling:
    line: int
    resource: str
    target: str


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    dangling: int = 0
    rejects: list[Rejected] = field(default_factory=list)
    danglings: list[Dangling] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)  # created or updated


@dataclass(frozen=True, slots=True)
class _Item:
    line: int
    kind: str
    fhir_id: str
    curp: str | None
    doc: dict[str, Any]
    comparable: bytes
    sensitivity: str
    index: Index
    refs: frozenset[str]  # "Type/id" it refers to
    urns: tuple[str, ...]  # urn:… references (a Bundle's, unresolved outside one)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.fhir_id}"


def reason_of(exc: FhirError) -> str:
    return "; ".join(
        f"{i.expression}: {i.diagnostics}" if i.expression else i.diagnostics for i in exc.issues
    )


def comparable(doc: dict[str, Any]) -> bytes:
    """The resource as compared for "same content": without its id and without what the
    server writes into `meta` (version, time, source, the institution's tag)."""
    out = {k: v for k, v in doc.items() if k not in ("id", "meta")}
    meta = {k: v for k, v in (doc.get("meta") or {}).items() if k not in _SERVER_META}
    tags = [t for t in meta.get("tag") or [] if t.get("system") != service.INSTITUTION_TAG]
    meta.pop("tag", None)
    if tags:
        meta["tag"] = tags
    if meta:
        out["meta"] = meta
    return exactjson.dumps(out, sort_keys=True)


def importer_name(source: str) -> str:
    """The name of the machine principal importing `source` (the author of what it writes)."""
    return f"{IMPORTER_PREFIX}{source}"[:100]


def check_caller(caller: Caller) -> None:
    """A bulk import is a system's work: a machine principal allowed to write the record."""
    p = caller.principal
    if p.role is not Role.CLIENT or not p.may(Permission.RECORD_WRITE):
        raise FhirError.one(
            403, "forbidden", "la importación masiva la hace un sistema con scopes de escritura"
        )


def prepare(line: int, raw: bytes, scopes: frozenset[str]) -> _Item | Rejected:
    """Read and check one line, as an interactive write would (nothing stored yet)."""
    resource = ""
    try:
        doc = parse(raw)
        kind = doc["resourceType"]
        given = doc.get("id")
        resource = f"{kind}/{given}" if isinstance(given, str) else kind
        validate(doc, unregistered_patient=True)
        if kind in mirror.KINDS and isinstance(given, str) and mirror.owns(kind, given):
            raise mirror.read_only(kind)  # the mirror answers that id (records/mirror.py)
        if not allows(scopes, kind, True):
            raise FhirError.one(403, "forbidden", f"los scopes del importador no cubren {kind}")
        curp = partition(doc)
        indexed = index(doc)  # a date it cannot index is this line's refusal, not the file's
    except FhirError as exc:
        return Rejected(line, resource, reason_of(exc))
    fhir_id = given if isinstance(given, str) else str(uuid.uuid4())
    urns = tuple(sorted(set(unresolved_references(doc))))
    return _Item(
        line, kind, fhir_id, curp, doc, comparable(doc), stored_form(doc),
        indexed, frozenset(local_references(doc)), urns,
    )  # fmt: skip


def _row(item: _Item, version: int, now: datetime, caller: Caller) -> tuple[Any, ...]:
    p = caller.principal
    content = service.with_meta(item.doc, item.fhir_id, version, now, caller)
    return (
        item.kind, item.fhir_id, version, now, False, item.curp, p.institution_code, p.clues,
        p.username, item.sensitivity, content,
    )  # fmt: skip


class _Chunk:
    """What one chunk did, for the report and the audit log."""

    def __init__(self) -> None:
        self.rejects: list[Rejected] = []
        self.danglings: list[Dangling] = []
        self.created: list[_Item] = []
        self.updated: list[_Item] = []
        self.unchanged = 0
        # Lines refused because the person restricted the stored entry to the institution
        # that recorded it: (line, person, categories), recorded as denied on their record.
        self.restricted: list[tuple[int, str, set[str]]] = []


RESTRICTED = "la persona restringió esta entrada a la institución que la registró"
CHANGED_SINCE = (
    "cambiado por la API después de que una importación lo escribiera (una corrección): la "
    "importación no la reemplaza; si el dato nuevo es el bueno, envíelo con PUT"
)
_RERUN = "_rerun"  # not a refusal: the line is what an import wrote before (left alone)


def by_import(author: str | None) -> bool:
    """Whether a version was written by a bulk import (its author is an importer's name)."""
    return author is not None and author.startswith(IMPORTER_PREFIX)


def _refusal(item: _Item, row: Existing, imported: list[str] | None) -> str | None:
    """Why a line may not replace the stored resource it names (None: it may; `_RERUN`: it
    is a re-run's line, left alone). `imported`: what imports wrote of a resource changed
    through the API since (None if no import ever wrote it)."""
    if row.person_curp != item.curp:
        was = f"Patient/{row.person_curp}" if row.person_curp else "ninguno"
        return f"un recurso no cambia de paciente (era {was})"
    if row.deleted:
        # Deleted since it was stored (a clinician's DELETE): a re-run of the file, the
        # documented recovery after a crash, must not bring it back.
        return "borrado desde que se guardó: la importación no lo revive"
    if imported is not None and not by_import(row.author):
        # Changed through the API after an import wrote it (a clinician's correction): the
        # same line again (a re-run of the file) leaves the correction as it is; other data
        # would silently replace it, so it is refused with the reason. A resource no import
        # ever wrote (created through the API) is updated as any other.
        if any(comparable(exactjson.loads(c)) == item.comparable for c in imported):
            return _RERUN  # any version an import wrote (a file may name a resource twice)
        return CHANGED_SINCE
    return None


async def _classify(
    session: AsyncSession, caller: Caller, items: list[_Item], out: _Chunk
) -> tuple[list[_Item], list[tuple[_Item, Existing]], list[_Item]]:
    """Split into new resources, new versions and lines left alone (same content). Refused
    (`_refusal`): a line that would change a stored entry the person restricted to the
    institution that recorded it when the importer is of another (the API's rule,
    `service.hidden_from`: the import would otherwise replace it and take it over), change
    its patient, revive it, or replace a change made through the API since an import wrote
    it (a re-run's line, what that import wrote, is left alone).
    The rows to change are locked, and classified again if someone changed one since it was
    read (an interactive update committed in between: its version would otherwise be
    overwritten and numbered twice)."""
    wanted: dict[str, list[str]] = {}
    for item in items:
        wanted.setdefault(item.kind, []).append(item.fhir_id)
    while True:
        found = await bulk_repository.existing(session, wanted)
        sensitive = {r.person_curp for r in found.values() if r.sensitivity and r.person_curp}
        restrictions = await bulk_repository.restrictions_for(session, sorted(sensitive))
        by_api: dict[str, list[str]] = {}
        for (kind, fhir_id), r in found.items():
            if not r.deleted and not by_import(r.author):
                by_api.setdefault(kind, []).append(fhir_id)
        imported = await bulk_repository.imported_versions(session, by_api, IMPORTER_PREFIX)
        new: list[_Item] = []
        changed: list[tuple[_Item, Existing]] = []
        rejects: list[Rejected] = []
        restricted: list[tuple[int, str, set[str]]] = []
        same: list[_Item] = []
        for item in items:
            row = found.get((item.kind, item.fhir_id))
            if row is None:
                new.append(item)
                continue
            if (
                not row.deleted
                and row.person_curp == item.curp
                and comparable(exactjson.loads(row.content)) == item.comparable
            ):
                same.append(item)
                continue
            curp = row.person_curp
            hidden = service.hidden_from(
                caller, row.sensitivity, row.institution_code, restrictions.get(curp or "", set())
            )
            if curp is not None and hidden:
                rejects.append(Rejected(item.line, item.key, RESTRICTED))
                restricted.append((item.line, curp, hidden))
            elif (reason := _refusal(item, row, imported.get((item.kind, item.fhir_id)))) == _RERUN:
                same.append(item)
            elif reason is not None:
                rejects.append(Rejected(item.line, item.key, reason))
            else:
                changed.append((item, row))
        versions = await bulk_repository.lock_versions(session, [row.pk for _, row in changed])
        if all(versions.get(row.pk) == row.version_id for _, row in changed):
            break
    out.rejects += rejects
    out.restricted += restricted
    out.unchanged += len(same)
    return new, changed, same


async def _references(
    session: AsyncSession, alive: list[_Item], new: set[str], lenient: bool, out: _Chunk
) -> list[_Item]:
    """Check every reference against the store and the chunk; the items still to write.
    `new`: the keys of the chunk's resources not stored yet (no need to look them up)."""
    targets = set().union(*(i.refs for i in alive)) - new
    missing = set(await service.missing_targets(session, targets)) | new
    while True:  # a reference to a line refused in this chunk is to nothing, too
        keys = {i.key for i in alive}
        bad = {i.key: sorted((i.refs & missing) - keys) + list(i.urns) for i in alive}
        bad = {k: v for k, v in bad.items() if v}
        if lenient or not bad:
            break
        for item in alive:
            if item.key in bad:
                reason = "referencia a un recurso que no existe: " + ", ".join(bad[item.key])
                out.rejects.append(Rejected(item.line, item.key, reason))
        alive = [i for i in alive if i.key not in bad]  # their referrers are checked again
    for item in alive:
        out.danglings += [Dangling(item.line, item.key, t) for t in bad.get(item.key, [])]
    return alive


async def write_chunk(
    session: AsyncSession, caller: Caller, items: list[_Item], *, lenient: bool, source: str
) -> _Chunk:
    """One chunk in the session's transaction (the caller commits), audit entries included."""
    out = _Chunk()
    await bulk_repository.begin_chunk(session)
    new, changed, same = await _classify(session, caller, items, out)
    # Lenient: the lines left alone are listed too, so that each run's list of references to
    # nothing is the file's whole list (a re-run after a crash would otherwise empty it).
    checked = new + [i for i, _ in changed] + (same if lenient else [])
    alive = await _references(session, checked, {i.key for i in new}, lenient, out)
    keep = {i.key for i in alive}  # new and changed ones kept (the ones left alone stay so)
    new = [i for i in new if i.key in keep]
    changed = [(i, row) for i, row in changed if i.key in keep]
    now = utcnow()
    pks = await bulk_repository.insert_new(session, [_row(i, 1, now, caller) for i in new])
    await bulk_repository.replace(
        session, [(row.pk, _row(i, row.version_id + 1, now, caller)) for i, row in changed]
    )
    await bulk_repository.insert_index(
        session,
        [(pk, i.index) for pk, i in zip(pks, new, strict=True)]
        + [(row.pk, i.index) for i, row in changed],
    )
    out.created, out.updated = new, [i for i, _ in changed]
    await _audit(session, caller, out, source)
    return out


async def _audit(session: AsyncSession, caller: Caller, out: _Chunk, source: str) -> None:
    """One entry per person whose record the chunk wrote (the counts, and the first and last
    of that person's lines), one for the rest (no person); and one denied entry per person
    whose restricted entries the chunk refused to replace (with the categories, as the API
    records its refusal: the person sees the attempt)."""
    counts: dict[str | None, Counter[str]] = {}
    lines: dict[str | None, list[int]] = {}
    for label, items in (("created", out.created), ("updated", out.updated)):
        for item in items:
            counts.setdefault(item.curp, Counter())[label] += 1
            lines.setdefault(item.curp, []).append(item.line)
    refused: dict[str, tuple[list[int], set[str]]] = {}
    for line, person, categories in out.restricted:
        numbers, hidden = refused.setdefault(person, ([], set()))
        numbers.append(line)
        hidden |= categories
    if not counts and not refused:
        return
    pending: list[AuditEntry] = []
    who = replace(caller, within=session, pending=pending, purpose="importacion")
    for curp, tally in sorted(counts.items(), key=lambda kv: kv[0] or ""):
        mine = lines[curp]
        await who.record(
            ACTION, "import", person_curp=curp, subject_id=source[:100],
            detail={**tally, "lines": [min(mine), max(mine)]},
        )  # fmt: skip
    for person, (numbers, hidden) in sorted(refused.items()):
        await who.record(
            ACTION, "import", person_curp=person, subject_id=source[:100], outcome="denied",
            detail={"restricted": sorted(hidden), "lines": [min(numbers), max(numbers)]},
        )  # fmt: skip
    await record_in_transaction(session, caller.audit.key, pending)


def _prepare_batch(
    lines: list[tuple[int, bytes]], scopes: frozenset[str]
) -> list[_Item | Rejected]:
    return [prepare(number, raw, scopes) for number, raw in lines]


async def _prepared(
    lines: Iterable[tuple[int, bytes]], scopes: frozenset[str], workers: int
) -> AsyncIterator[_Item | Rejected]:
    """The lines checked, in file order; with `workers`, in that many processes, which go
    on checking the next lines while this one writes a chunk (validation is most of the CPU
    time: the R4B models)."""
    if workers <= 0:
        for number, raw in lines:
            yield prepare(number, raw, scopes)
        return
    loop = asyncio.get_running_loop()
    source = iter(lines)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        in_flight: deque[asyncio.Future[list[_Item | Rejected]]] = deque()
        while batch := list(islice(source, 500)):
            in_flight.append(loop.run_in_executor(pool, _prepare_batch, batch, scopes))
            while len(in_flight) >= workers * 3:
                for item in await in_flight.popleft():
                    yield item
        while in_flight:
            for item in await in_flight.popleft():
                yield item


def ndjson_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if raw.strip():
                yield number, raw


ANALYZE_AFTER = 10_000  # resources written by one import before statistics are refreshed


async def import_lines(
    sessions: async_sessionmaker[AsyncSession],
    caller: Caller,
    lines: Iterable[tuple[int, bytes]],
    *,
    source: str,
    lenient: bool = False,
    chunk_size: int = 5000,
    rejects_out: IO[bytes] | None = None,
    dangling_out: IO[bytes] | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 0,
    analyze_after: int = ANALYZE_AFTER,
) -> ImportReport:
    """Import (line number, NDJSON bytes) pairs in chunks; see the module's docstring.
    `workers` > 0 checks the lines in that many processes (worth it for large files).
    After `analyze_after` resources or more, the store's statistics are refreshed."""
    check_caller(caller)
    report = ImportReport()

    def reject(r: Rejected) -> None:
        report.rejected += 1
        if len(report.rejects) < _KEPT:
            report.rejects.append(r)
        if rejects_out is not None:
            rejects_out.write(
                orjson.dumps({"linea": r.line, "recurso": r.resource or None, "motivo": r.reason})
                + b"\n"
            )

    early: list[Rejected] = []  # refused before writing: reported with their chunk, in order

    async def flush(items: list[_Item]) -> None:
        found = list(early)
        early.clear()
        if items:
            async with sessions() as session, session.begin():
                out = await write_chunk(session, caller, items, lenient=lenient, source=source)
            report.created += len(out.created)
            report.updated += len(out.updated)
            report.unchanged += out.unchanged
            report.by_type.update(i.kind for i in out.created + out.updated)
            found += out.rejects
            for d in out.danglings:
                report.dangling += 1
                if len(report.danglings) < _KEPT:
                    report.danglings.append(d)
                if dangling_out is not None:
                    dangling_out.write(
                        orjson.dumps(
                            {"linea": d.line, "recurso": d.resource, "referencia": d.target}
                        )
                        + b"\n"
                    )
        for r in sorted(found, key=lambda r: r.line):
            reject(r)
        if progress is not None:
            progress(report.read)

    chunk: list[_Item] = []
    keys: set[str] = set()
    async for item in _prepared(lines, caller.principal.scopes, workers):
        report.read += 1
        if isinstance(item, Rejected):
            early.append(item)
            if len(early) >= chunk_size:  # a file of mostly bad lines: bounded memory
                await flush(chunk)
                chunk, keys = [], set()
            continue
        if item.key in keys or len(chunk) >= chunk_size:
            await flush(chunk)  # a repeated id is a new version: it goes in the next chunk
            chunk, keys = [], set()
        chunk.append(item)
        keys.add(item.key)
    await flush(chunk)
    if report.created + report.updated >= analyze_after:
        # A large load changes the tables' statistics wholesale; searches planned on the old
        # ones (an empty table's) can scan everything. Measured at 1 M resources: search by
        # patient and code fell to 6 requests/s until the tables were analyzed.
        async with sessions() as session, session.begin():
            await bulk_repository.refresh_statistics(session)
    return report
