"""FHIR Bulk Data export (https://hl7.org/fhir/uv/bulkdata/, v2): `Patient/$export` for
every patient, and `Patient/{CURP}/$export` for one person's record.

Who may export what follows the record's access model:
- every patient: only a machine client holding `system/*.read` (a clinician, or a system
  with narrower scopes, never lists everybody's record);
- one person: whoever may open that person's record (`service.open_record`: the permission,
  a clinician's basis of care, consent or emergency, the person themselves).
What the person restricted to the recording institution stays out, as in every read.

A job is asynchronous (FHIR asynchronous request pattern): the kick-off writes the job's
state to `job.json` in a folder of its own under `SALUD_EXPORT_DIR` and starts an asyncio
task in the server process; the task writes one NDJSON file per resource type into that
folder and then marks the job done. The state is in a file, so the status answer does not
depend on the request that started the job, and any process of the server may answer it;
the task renews a heartbeat in `job.json` as it goes, so a job whose process died (restart,
crash) is reported as failed instead of running forever. A job is deleted by DELETE on its
status URL (answered by another process, which cannot cancel this task, it removes the
folder: the task finds its job.json gone at its next page or heartbeat and stops, recording
nothing more), and expires by itself: a finished job's folder is removed
`SALUD_EXPORT_TTL_HOURS` after it finished (the manifest's answer carries that moment as
`Expires`, as the IG suggests); expired folders are swept at every kick-off and when their
status is asked. An owner may have at most `SALUD_EXPORT_MAX_RUNNING` jobs running at
once: one more is 429 with Retry-After (a soft limit within a process; two processes kicking
off at the same instant may both pass it).

Audit: the kick-off is one entry (`records:export:start`, refused ones included), and every
person whose data went into the files is one entry (`records:Patient:export`, with the
job and the number of resources), as a list or search records each person it discloses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditEntry
from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.scopes import allows
from salud.identity.models import Person
from salud.kit.clock import MEXICO_CITY, utcnow
from salud.records import bulk_repository, mirrored, service
from salud.records.compartment import PATIENT_COMPARTMENT
from salud.records.indexing import fhir_instant, instant_param
from salud.records.outcome import FhirError
from salud.records.patient import to_patient
from salud.records.types import STORED_TYPES
from salud.storage.base import PARTITION_KEY_LENGTH
from salud.storage.fastread import FastReader

OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
PARAMETERS = frozenset({"_type", "_since", "_outputFormat"})
EXPORTABLE = STORED_TYPES | {"Patient"}
STALE_AFTER = timedelta(minutes=2)  # a running job's heartbeat older than this: it died
_PAGE = 500  # persons per page (one read of their resources, one audit append)
_TASKS: dict[str, asyncio.Task[None]] = {}  # running jobs of this process (kept referenced)


@dataclass
class Job:
    id: str
    owner: str  # the principal's subject: only it may see the status and the files
    request: str
    base: str  # where the files are served: {base}/bulk/{id}/{Type}.ndjson
    types: list[str]
    since: str | None
    patient: str | None  # one person's export, or None for every patient
    transaction_time: str
    system: bool = False  # GET /$export: every patient and what is in nobody's record
    status: str = "running"  # running | done | failed
    heartbeat: str = ""
    finished: str | None = None  # when it became done or failed; it expires from there
    persons: int = 0
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def manifest(self) -> dict[str, Any]:
        """The completed job's manifest (Bulk Data IG, "Response - Complete Status")."""
        return {
            "transactionTime": self.transaction_time,
            "request": self.request,
            "requiresAccessToken": True,
            "output": [
                {
                    "type": o["type"],
                    "url": f"{self.base}/bulk/{self.id}/{o['type']}.ndjson",
                    "count": o["count"],
                }
                for o in self.outputs
            ],
            "error": [],
        }


_JOB_FIELDS = frozenset(f.name for f in fields(Job))


_JOB_ID = re.compile(r"[0-9a-f]{32}")


def _folder(root: Path, job_id: str) -> Path:
    if not _JOB_ID.fullmatch(job_id):  # ids are uuid4 hex: nothing else names a folder
        raise FhirError.one(404, "not-found", "no existe esa exportación")
    return root / job_id


def _save(root: Path, job: Job) -> None:
    """job.json, replaced atomically (a reader sees the old state or the new one)."""
    folder = _folder(root, job.id)
    tmp = folder / "job.json.tmp"
    tmp.write_bytes(orjson.dumps(asdict(job)))
    os.replace(tmp, folder / "job.json")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _read(folder: Path) -> Job | None:
    try:
        saved = orjson.loads((folder / "job.json").read_bytes())
        # Only the fields this version knows: a job written by a newer version still reads.
        return Job(**{k: v for k, v in saved.items() if k in _JOB_FIELDS})
    except FileNotFoundError:
        return None


def _settle(job: Job, now: datetime) -> Job:
    """A running job whose heartbeat stopped (its process died) is failed from then on. A
    job finished before jobs recorded when (no `finished`) counts from its last heartbeat."""
    if job.status != "running" and job.finished is None:
        job.finished = job.heartbeat or job.transaction_time
    if job.status == "running" and job.heartbeat:
        beat = _instant(job.heartbeat)
        if now - beat > STALE_AFTER and job.id not in _TASKS:
            job.status, job.error = "failed", "la exportación se interrumpió: vuelva a pedirla"
            job.finished = job.finished or fhir_instant(beat)
    return job


def expires(job: Job, ttl: timedelta) -> datetime | None:
    """When a finished job's files are removed (None while it runs)."""
    return _instant(job.finished) + ttl if job.finished else None


def load_job(root: Path, job_id: str, owner: str, ttl: timedelta) -> Job:
    """The job's state, for its owner only (anyone else: 404, as if it did not exist). An
    expired job is removed and is 404 too."""
    job = _read(_folder(root, job_id))
    if job is None or job.owner != owner:
        raise FhirError.one(404, "not-found", "no existe esa exportación")
    now = utcnow()
    job = _settle(job, now)
    ends = expires(job, ttl)
    if ends is not None and now >= ends:
        delete_job(root, job)
        raise FhirError.one(404, "not-found", "la exportación expiró: vuelva a pedirla")
    return job


def sweep(root: Path, ttl: timedelta, owner: str) -> int:
    """Remove every expired job's folder (and a folder left without its job.json, older than
    the time to live), in the same pass counting this owner's running jobs (a dead one is
    not running); the count."""
    if not root.is_dir():
        return 0
    now, running = utcnow(), 0
    for folder in root.iterdir():
        if not folder.is_dir() or not _JOB_ID.fullmatch(folder.name):
            continue
        job = _read(folder)
        if job is None:
            gone = now - datetime.fromtimestamp(folder.stat().st_mtime, UTC) > ttl
        else:
            job = _settle(job, now)
            ends = expires(job, ttl)
            gone = ends is not None and now >= ends
            if job.owner == owner and job.status == "running":
                running += 1
        if gone:
            shutil.rmtree(folder, ignore_errors=True)
    return running


def output_file(root: Path, job: Job, name: str) -> Path:
    """The path of one of a completed job's files."""
    if job.status != "done" or name not in {f"{o['type']}.ndjson" for o in job.outputs}:
        raise FhirError.one(404, "not-found", f"la exportación no tiene el archivo {name}")
    return _folder(root, job.id) / name


def delete_job(root: Path, job: Job) -> None:
    task = _TASKS.pop(job.id, None)
    if task is not None:
        task.cancel()
    shutil.rmtree(_folder(root, job.id), ignore_errors=True)


def _types(raw: str | None, caller: Caller) -> list[str]:
    p = caller.principal
    if raw is None:
        kinds = sorted(EXPORTABLE)
        return [k for k in kinds if p.role is not Role.CLIENT or allows(p.scopes, k, False)]
    kinds = sorted({k.strip() for k in raw.split(",") if k.strip()})
    if not kinds:
        raise FhirError.one(400, "required", "_type: indique al menos un tipo", "_type")
    unknown = [k for k in kinds if k not in EXPORTABLE]
    if unknown:
        raise FhirError.one(
            400, "not-supported", f"_type: tipos que no se exportan: {', '.join(unknown)}", "_type"
        )
    if p.role is Role.CLIENT:
        denied = [k for k in kinds if not allows(p.scopes, k, False)]
        if denied:
            raise FhirError.one(403, "forbidden", f"los scopes no cubren {', '.join(denied)}")
    return kinds


def _since(raw: str | None) -> datetime | None:
    return None if raw is None else instant_param(raw, "_since")  # Bulk Data v2: an instant


def may_export_everyone(caller: Caller) -> bool:
    """Every patient's record: a system with `system/*.read` (or `system/*.*`) only."""
    p = caller.principal
    return p.role is Role.CLIENT and bool({"system/*.read", "system/*.*"} & p.scopes)


@dataclass(frozen=True)
class Limits:
    ttl: timedelta  # how long a finished job's files are kept
    max_running: int  # jobs one owner may have running at once


async def kick_off(
    session: AsyncSession, reader: FastReader, caller: Caller, root: Path, *, base: str,
    request: str, curp: str | None, query: dict[str, str], limits: Limits,
    system: bool = False,
) -> tuple[Job, Caller, Person | None]:  # fmt: skip
    """Check the request and the caller, write the job's state; (job, the Caller to audit
    the export with, the person of a one-person export). The task is `run`."""
    if curp is not None and len(curp) > PARTITION_KEY_LENGTH:  # no record has such an id
        raise FhirError.one(
            404, "not-found", f"no hay ningún Patient con ese id (más de {PARTITION_KEY_LENGTH})"
        )
    unknown = sorted(set(query) - PARAMETERS)
    if unknown:
        raise FhirError.one(400, "not-supported", f"$export no admite {', '.join(unknown)}")
    fmt = query.get("_outputFormat")
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise FhirError.one(400, "not-supported", "_outputFormat: solo application/fhir+ndjson")
    try:
        types = _types(query.get("_type"), caller)
    except FhirError as exc:
        if exc.status == 403:  # a type the client's scopes do not cover: a refusal, recorded
            await caller.record("records:export:start", "export", person_curp=curp,
                                outcome="denied", detail={"reason": "scopes"})  # fmt: skip
        raise
    since = _since(query.get("_since"))
    person: Person | None = None
    who = caller
    if curp is None:
        if not may_export_everyone(caller):
            await caller.record("records:export:start", "export", outcome="denied")
            raise FhirError.one(
                403, "forbidden",
                "exportar el expediente de todos es solo para un sistema con scope system/*.read",
            )  # fmt: skip
    else:
        action = "records:Patient:export"
        who, person, _, _ = await service.open_record(session, reader, caller, curp, action)
        if person is None:  # a Patient kept outside the registry: not exported on its own
            raise FhirError.one(
                404, "not-supported", f"Patient/{curp} no está en el padrón: no se exporta solo"
            )
    if sweep(root, limits.ttl, caller.principal.subject) >= limits.max_running:
        await who.record("records:export:start", "export", person_curp=curp, outcome="denied",
                         detail={"running": limits.max_running})  # fmt: skip
        raise FhirError.one(
            429, "throttled",
            f"ya tiene {limits.max_running} exportaciones en curso: espere a que terminen o "
            "cancele una (DELETE en su URL de estado)",
        )  # fmt: skip
    now = fhir_instant(utcnow())
    job = Job(
        uuid.uuid4().hex, caller.principal.subject, request, base, types,
        fhir_instant(since) if since else None, curp, now, system=system and curp is None,
        heartbeat=now,
    )  # fmt: skip
    _folder(root, job.id).mkdir(parents=True)
    _save(root, job)
    await who.record(
        "records:export:start", "export", person_curp=curp, subject_id=f"export/{job.id}",
        detail={"types": len(types), "since": job.since},
    )  # fmt: skip
    return job, who, person


class _Files:
    """The job's NDJSON files, one per type, opened as the first line of each arrives."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.handles: dict[str, IO[bytes]] = {}
        self.counts: dict[str, int] = {}

    def write(self, kind: str, content: str | bytes) -> None:
        if kind not in self.handles:
            self.handles[kind] = (self.folder / f"{kind}.ndjson").open("wb")
            self.counts[kind] = 0
        data = content.encode() if isinstance(content, str) else content
        self.handles[kind].write(data + b"\n")
        self.counts[kind] += 1

    def close(self) -> list[dict[str, Any]]:
        for handle in self.handles.values():
            handle.close()
        return [{"type": k, "count": self.counts[k]} for k in sorted(self.counts)]


async def run(
    sessions: async_sessionmaker[AsyncSession], root: Path, job: Job, who: Caller,
    person: Person | None,
) -> None:  # fmt: skip
    """Write the job's files, then mark it done (or failed, with the reason)."""
    files = _Files(_folder(root, job.id))
    until = datetime.fromisoformat(job.transaction_time.replace("Z", "+00:00"))
    since = datetime.fromisoformat(job.since.replace("Z", "+00:00")) if job.since else None
    kinds = [k for k in job.types if k != "Patient"]
    registry = bool({"Patient", "Coverage"} & set(job.types))  # read from the registry
    window = bulk_repository.Window(since, until, "Coverage" in job.types)
    own = service.is_the_person(who, job.patient)
    try:
        if job.patient is not None:
            assert person is not None
            await _page(sessions, root, who, job, files, [person], kinds, since, until, own,
                        only=job.patient)  # fmt: skip
        else:
            # Every person once: the registry's persons and the store's records are walked
            # together in CURP order, one range (after, upto] per page, its end chosen by
            # the database (in the order of its own comparisons).
            after = ""
            while True:
                async with sessions() as session:
                    upto = await bulk_repository.page_end(
                        session, after, _PAGE, window if registry else None
                    )
                    people = (
                        await bulk_repository.persons_page(session, after, upto, window)
                        if registry
                        else []
                    )
                await _page(sessions, root, who, job, files, people, job.types, since, until,
                            own, after=after, upto=upto)  # fmt: skip
                if upto is None:
                    break
                after = upto
                _beat(root, job)
            unowned = [k for k in kinds if k not in PATIENT_COMPARTMENT]
            if job.system and unowned:
                _beat(root, job)
                await _nobodys(sessions, root, who, job, files, unowned, since, until)
        job.outputs, job.status = files.close(), "done"
    except asyncio.CancelledError:
        files.close()
        raise
    except _Deleted:  # DELETE (in any process) removed the job: stop, write nothing more
        files.close()
        shutil.rmtree(_folder(root, job.id), ignore_errors=True)  # files opened since
        return
    except Exception as exc:
        files.close()
        job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
    finally:
        _TASKS.pop(job.id, None)
    job.finished = fhir_instant(utcnow())
    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
        _save(root, job)


class _Deleted(Exception):
    """The job's job.json is gone: a DELETE removed the job, perhaps in another process
    (where `delete_job` cannot cancel this task)."""


def _alive(root: Path, job: Job) -> None:
    """Raise _Deleted if the job was deleted (its job.json is gone)."""
    if not (_folder(root, job.id) / "job.json").exists():
        raise _Deleted


def _beat(root: Path, job: Job) -> None:
    """Renew the heartbeat, after checking the job was not deleted meanwhile (never writing
    its job.json again)."""
    _alive(root, job)
    job.heartbeat = fhir_instant(utcnow())
    try:
        _save(root, job)
    except FileNotFoundError:  # the folder went since the check
        raise _Deleted from None


async def _page(
    sessions: async_sessionmaker[AsyncSession], root: Path, who: Caller, job: Job,
    files: _Files, people: Sequence[Person], kinds: Sequence[str], since: datetime | None,
    until: datetime, own: bool, *, after: str = "", upto: str | None = None,
    only: str | None = None,
) -> None:  # fmt: skip
    """One page: these registry persons' Patient and Coverage, the resources of the persons in
    (after, upto] (or `only` one); then one audit entry per person whose data went out (none
    if the job was deleted meanwhile: those files are gone)."""
    sent: dict[str, int] = {}
    today = until.astimezone(MEXICO_CITY).date()  # the Coverages as at transactionTime
    for person in people:  # the registry's: the Patient, and Coverage from the affiliations
        changed = since is None or person.updated_at > since
        mirrored_docs = [to_patient(person)] if "Patient" in job.types and changed else []
        if "Coverage" in job.types:  # each one changed after `since` (by time alone, too)
            mirrored_docs += mirrored.coverages_for(who, person, today, since)
        for doc in mirrored_docs:
            files.write(doc["resourceType"], orjson.dumps(doc))
            sent[person.curp] = sent.get(person.curp, 0) + 1
    if kinds:
        async with sessions() as session:
            restricted = (
                {} if own else await bulk_repository.restrictions_of(session, after, upto, only)
            )
            rows = bulk_repository.record_rows(
                session, kinds, since, until, after=after, upto=upto, only=only
            )
            async for kind, curp, sensitivity, institution, _, content in rows:
                if service.hidden_from(who, sensitivity, institution, restricted.get(curp, set())):
                    continue
                files.write(kind, content)
                sent[curp] = sent.get(curp, 0) + 1
    _alive(root, job)
    if sent:
        pending: list[AuditEntry] = []
        recorder = replace(who, within=None, pending=pending)
        for curp, count in sorted(sent.items()):
            await recorder.record(
                "records:Patient:export", "Patient", person_curp=curp,
                subject_id=f"Patient/{curp}", detail={"export": job.id, "resources": count},
            )  # fmt: skip
        await who.audit.record_many(pending)
        job.persons += len(sent)


async def _nobodys(
    sessions: async_sessionmaker[AsyncSession], root: Path, who: Caller, job: Job,
    files: _Files, kinds: Sequence[str], since: datetime | None, until: datetime,
) -> None:  # fmt: skip
    """A system export's last part: the resources in no person's record, of types outside
    the Patient compartment (practitioners, medications, definitions…), recorded as one
    entry with how many of each type."""
    sent: dict[str, int] = {}
    written = 0
    async with sessions() as session:
        rows = bulk_repository.record_rows(session, kinds, since, until, nobody=True)
        async for kind, _, _, _, _, content in rows:
            files.write(kind, content)
            sent[kind] = sent.get(kind, 0) + 1
            written += 1
            if written % 5000 == 0:  # a long part: show the job is alive
                _beat(root, job)
    _alive(root, job)
    if sent:
        await who.record(
            "records:export:unowned", "export", subject_id=f"export/{job.id}",
            detail={"export": job.id, "resources": dict(sorted(sent.items()))},
        )  # fmt: skip


def start(
    sessions: async_sessionmaker[AsyncSession], root: Path, job: Job, who: Caller,
    person: Person | None,
) -> None:  # fmt: skip
    """Run the job as a task of this process (it outlives the request that started it)."""
    _TASKS[job.id] = asyncio.get_running_loop().create_task(
        run(sessions, root, job, who, person), name=f"export-{job.id}"
    )
