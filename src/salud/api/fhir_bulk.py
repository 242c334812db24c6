"""FHIR Bulk Data export over HTTP (records/export.py): the kick-off, the status URL and the
files, all behind the same bearer token (the manifest says `requiresAccessToken: true`).

    GET /fhir/$export                    every patient, and what is in nobody's record
    GET /fhir/Patient/$export            every patient (a system with system/*.read)
    GET /fhir/Patient/{CURP}/$export     one person's record (who may open that record)
    GET /fhir/bulk/{job}                 202 while running (X-Progress), 200 + manifest
    DELETE /fhir/bulk/{job}              cancel, or delete the files
    GET /fhir/bulk/{job}/{Type}.ndjson   one output file (application/fhir+ndjson)
"""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from salud.api.deps import Reader, Session, caller_of
from salud.api.fhir_refusals import base_url, guard
from salud.records import export
from salud.records.outcome import FhirError

router = APIRouter(prefix="/fhir", include_in_schema=False)
NDJSON = "application/fhir+ndjson"


def _root(request: Request) -> Path:
    root: Path = request.app.state.settings.export_dir
    return root


def _limits(request: Request) -> export.Limits:
    settings = request.app.state.settings
    return export.Limits(timedelta(hours=settings.export_ttl_hours), settings.export_max_running)


async def _kick_off(
    request: Request, session: Session, reader: Reader, curp: str | None, system: bool = False
) -> Response:
    """FHIR asynchronous request pattern: 202 + Content-Location of the status URL."""
    caller = caller_of(request)
    if "respond-async" not in request.headers.get("prefer", ""):
        raise FhirError.one(
            400, "required", "$export es asíncrono: envíe el encabezado Prefer: respond-async"
        )
    query = dict(request.query_params)
    if len(query) != len(request.query_params.multi_items()):
        raise FhirError.one(400, "invalid", "cada parámetro de $export va una sola vez")
    job, who, person = await export.kick_off(
        session, reader, caller, _root(request), base=base_url(request), request=str(request.url),
        curp=curp, query=query, limits=_limits(request), system=system,
    )  # fmt: skip
    # The job reads with sessions of its own: it outlives this request and its session.
    export.start(request.app.state.sessions, _root(request), job, who, person)
    status = f"{base_url(request)}/bulk/{job.id}"
    return Response(status_code=202, headers={"Content-Location": status})


@router.get("/$export")
async def export_system(request: Request, session: Session, reader: Reader) -> Response:
    return await guard(lambda: _kick_off(request, session, reader, None, system=True))


@router.get("/Patient/$export")
async def export_everyone(request: Request, session: Session, reader: Reader) -> Response:
    return await guard(lambda: _kick_off(request, session, reader, None))


@router.get("/Patient/{curp}/$export")
async def export_one(curp: str, request: Request, session: Session, reader: Reader) -> Response:
    return await guard(lambda: _kick_off(request, session, reader, curp))


def _job(request: Request, job_id: str) -> export.Job:
    subject = caller_of(request).principal.subject
    return export.load_job(_root(request), job_id, subject, _limits(request).ttl)


@router.get("/bulk/{job_id}")
async def status(job_id: str, request: Request) -> Response:
    async def run() -> Response:
        job = _job(request, job_id)
        if job.status == "running":
            progress = f"{job.persons} personas exportadas"
            return Response(status_code=202, headers={"X-Progress": progress, "Retry-After": "2"})
        if job.status == "failed":
            raise FhirError.one(500, "exception", job.error or "la exportación falló")
        # When the files will be removed (Bulk Data IG: the Expires header of the manifest).
        ends = export.expires(job, _limits(request).ttl)
        headers = {"Expires": format_datetime(ends, usegmt=True)} if ends else {}
        return Response(orjson.dumps(job.manifest()), media_type="application/json",
                        headers=headers)  # fmt: skip

    return await guard(run)


@router.delete("/bulk/{job_id}")
async def delete(job_id: str, request: Request) -> Response:
    async def run() -> Response:
        export.delete_job(_root(request), _job(request, job_id))
        return Response(status_code=202)

    return await guard(run)


@router.get("/bulk/{job_id}/{name}")
async def output(job_id: str, name: str, request: Request) -> Response:
    async def run() -> Response:
        path = export.output_file(_root(request), _job(request, job_id), name)
        return FileResponse(path, media_type=NDJSON)

    return await guard(run)
