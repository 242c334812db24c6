"""The FHIR R4 API at /fhir (application/fhir+json). Errors are OperationOutcome.

These routes are not in the OpenAPI document: a FHIR server describes itself with its
CapabilityStatement (`GET /fhir/metadata`), which lists exactly what is implemented."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request as StarletteRequest
from starlette.routing import BaseRoute, Route

from salud import __version__
from salud.access.audit import AuditEntry
from salud.access.permissions import Permission
from salud.api import fhir_bulk
from salud.api.deps import Reader, ReadSession, Session, caller_of
from salud.api.fhir_refusals import base_url, guard
from salud.errors import DomainError
from salud.kit import exactjson
from salud.kit.streams import read_at_most
from salud.records import (
    auditevents,
    bundles,
    mirror,
    mirrored,
    patient_search,
    searching,
    service,
    summary,
)
from salud.records.compartment import partition
from salud.records.indexing import PARAMS, PATIENT_PATH, instant_param
from salud.records.mirror_query import MAX_OFFSET
from salud.records.outcome import FhirError, Issue, bounded_int, is_number, operation_outcome
from salud.records.types import STORED_TYPES
from salud.records.validation import parse, validate
from salud.storage.fastread import FastReader

FHIR_JSON = "application/fhir+json"
# FHIR R4 RESTful API, content types (http.html#mime-type): `_format` names the format of
# the answer and overrides Accept. This server speaks JSON only; a "+" left unencoded in a
# URL arrives as a space, so "application/fhir json" is the same request.
_JSON_FORMATS = frozenset({"json", "application/json", FHIR_JSON, "application/fhir json"})


async def _json_only(request: Request) -> None:
    """Refuse (406) a `_format` this server cannot answer in, naming it, before any work."""
    for value in request.query_params.getlist("_format"):
        if value.split(";")[0].strip().lower() not in _JSON_FORMATS:
            raise FhirError.one(
                406, "not-supported",
                f"_format={value}: el servidor solo responde en JSON "
                f"(_format=json, application/json o {FHIR_JSON})",
                "_format",
            )  # fmt: skip


def _only(request: Request, *allowed: str) -> None:
    """An interaction's parameters, the unknown ones refused by name (never ignored)."""
    unknown = sorted(set(request.query_params) - {*allowed, "_format"})
    if unknown:
        raise FhirError.one(
            400, "not-supported",
            f"parámetros no admitidos aquí: {', '.join(unknown)} "
            f"(admitidos: {', '.join(sorted({*allowed, '_format'}))})",
        )  # fmt: skip


def _count(request: Request, default: int, high: int) -> int:
    count = request.query_params.get("_count", str(default))
    if not is_number(count) or not 1 <= int(count) <= high:
        raise FhirError.one(400, "invalid", f"_count debe ser un entero de 1 a {high}", "_count")
    return int(count)


def _history_page(request: Request, default: int) -> tuple[service.Page, datetime | None]:
    """A history's `_count`, `_offset` (its paging links) and `_since` (an instant)."""
    _only(request, "_count", "_offset", "_since")
    offset = bounded_int(request.query_params.get("_offset", "0"), "_offset", 0, MAX_OFFSET)
    since = request.query_params.get("_since")
    page = service.Page(
        _count(request, default, 200), offset, list(request.query_params.multi_items())
    )
    return page, None if since is None else instant_param(since, "_since")


router = APIRouter(prefix="/fhir", include_in_schema=False, dependencies=[Depends(_json_only)])


def _fhir(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = content.encode() if isinstance(content, str) else exactjson.dumps(content)
    return Response(body, status_code=status, media_type=FHIR_JSON, headers=headers)


async def _render(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 405:  # RFC 9110 §15.5.6: a 405 names the methods the resource allows
        headers = {"Allow": "GET"}
    if exc.status == 429:  # too many at once (running exports): when to try again
        headers = {"Retry-After": "30"}
    return _fhir(operation_outcome(exc.issues), exc.status, headers)


def install(app: FastAPI) -> None:
    app.include_router(fhir_bulk.router)  # first: /fhir/bulk/… and …/$export are not /{kind}/{id}
    app.include_router(router)
    app.add_exception_handler(FhirError, _render)


def _stored_headers(
    request: Request, kind: str, stored: service.Stored, *, written: bool = True
) -> dict[str, str]:
    """ETag and Last-Modified; and, for a create or an update, where the version now is."""
    headers = {
        "ETag": f'W/"{stored.version_id}"',
        "Last-Modified": stored.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }
    if written:
        version = f"{base_url(request)}/{kind}/{stored.fhir_id}/_history/{stored.version_id}"
        headers["Location"] = version
    return headers


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    return _fhir(capability_statement(base_url(request)))


def _count_entries(doc: dict[str, Any]) -> int:
    entries = doc.get("entry")
    return len(entries) if isinstance(entries, list) else 0


@router.post("")
@router.post("/")
async def bundle(request: Request, reader: Reader) -> Response:
    """transaction or batch Bundle. The transaction's session is managed here, so that a
    failed transaction, once rolled back, can still be recorded in the audit log."""

    async def run() -> Response:
        _only(request)
        caller = caller_of(request)
        doc = parse(await request.body(), "Bundle")
        kind, base = doc.get("type"), base_url(request)
        sessions = request.app.state.sessions
        if kind == "batch":
            return _fhir(await bundles.batch(sessions, reader, caller, base, doc))
        if kind != "transaction":
            raise FhirError.one(
                400, "not-supported", "el servidor recibe Bundles de tipo transaction o batch",
                "Bundle.type",
            )  # fmt: skip
        pending: list[AuditEntry] = []
        try:
            async with sessions() as session, session.begin():
                result = await bundles.transaction(
                    session, reader, caller, base, doc, pending=pending
                )
        except (FhirError, DomainError) as exc:
            # The refusals stay on record, each on its person's record (the rollback took
            # them with the transaction); what was read before the failure was never sent.
            denied = [e for e in pending if e.outcome == "denied"]
            if denied:
                await caller.audit.record_many(denied)
            await caller.record(
                "records:Bundle:transaction", "Bundle", outcome="denied",
                detail={"entries": _count_entries(doc), "problem": str(exc)[:300]},
            )  # fmt: skip
            raise
        return _fhir(result)

    return await guard(run)


def _may_target(param: str, kind: str) -> bool:
    """Whether a reference parameter can point at this type (what a _revinclude on it may
    find): `encounter` at Encounter, `patient`/`subject`/`beneficiary` at Patient…"""
    if kind == "Patient":
        return param in ("patient", "subject", "beneficiary")
    return param == kind.lower()


@router.get("/Patient/{curp}/$everything")
async def everything(curp: str, request: Request, session: ReadSession, reader: Reader) -> Response:
    async def run() -> Response:
        _only(request, "_count", "_offset")
        count = request.query_params.get("_count", "100")
        offset = request.query_params.get("_offset", "0")
        if not is_number(count) or not 1 <= int(count) <= 500 or not is_number(offset):
            raise FhirError.one(400, "invalid", "_count de 1 a 500 y _offset entero")
        bundle = await service.everything(
            session, reader, caller_of(request), base_url(request), curp, int(count), int(offset)
        )
        return _fhir(bundle)

    return await guard(run)


@router.get("/Patient/{curp}/$summary")
async def patient_summary(
    curp: str, request: Request, session: ReadSession, reader: Reader
) -> Response:
    """The International Patient Summary, a `document` Bundle (records/summary.py)."""

    async def run() -> Response:
        unknown = sorted({n for n in request.query_params if n != "_format"})
        if unknown:
            raise FhirError.one(
                400, "not-supported", f"$summary no admite parámetros: {', '.join(unknown)}"
            )
        bundle = await summary.summary(session, reader, caller_of(request), base_url(request), curp)
        return _fhir(bundle)

    return await guard(run)


@router.post("/{kind}/$validate")
async def validate_operation(
    kind: str, request: Request, session: ReadSession, reader: Reader
) -> Response:
    """$validate: the resource checked as a create would check it, nothing stored: the model
    and our rules, whose record it belongs to, then (for whom may write it there: the
    permission, a machine client's scopes, a clinician's basis, as a create) that its
    references name something, which would otherwise tell anyone signed in whether a person
    or a record exists. The answer is an OperationOutcome: 200 with the problems (or "sin
    problemas"); a caller who may not write it there gets the create's 403."""

    async def run() -> Response:
        _only(request)
        caller = caller_of(request)
        doc = parse(await request.body())
        if doc["resourceType"] == "Parameters":
            params = doc.get("parameter") or []
            if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
                raise FhirError.one(
                    400, "structure", "parameter debe ser una lista de objetos",
                    "Parameters.parameter",
                )  # fmt: skip
            found = [p.get("resource") for p in params if p.get("name") == "resource"]
            if not found or not isinstance(found[0], dict):
                raise FhirError.one(400, "required", "Parameters sin el parámetro resource")
            doc = found[0]
        if doc.get("resourceType") != kind:
            raise FhirError.one(400, "invalid", f"el recurso no es un {kind}", "resourceType")
        try:
            validate(doc)
            curp = partition(doc)
        except FhirError as exc:
            return _fhir(operation_outcome(exc.issues), 200)
        action = f"records:{kind}:validate"
        who = await service.may(reader, caller, Permission.RECORD_WRITE, action, kind, curp, None)
        missing = await service.dangling_references(session, doc)
        # Recorded: whether references exist in the person's record was checked for them.
        await who.record(action, kind, person_curp=curp, detail={"missing": len(missing)})
        if missing:
            problem = "referencia a un recurso que no existe: " + ", ".join(missing)
            return _fhir(operation_outcome([Issue("not-found", problem)]), 200)
        ok = Issue("informational", "sin problemas", None, "information")
        return _fhir(operation_outcome([ok]), 200)

    return await guard(run)


@router.get("/AuditEvent")
async def audit_search(request: Request, session: ReadSession) -> Response:
    async def run() -> Response:
        query = list(request.query_params.multi_items())
        bundle = await auditevents.search(session, caller_of(request), base_url(request), query)
        return _fhir(bundle)

    return await guard(run)


@router.get("/AuditEvent/{seq}")
async def audit_read(seq: str, request: Request, session: ReadSession) -> Response:
    async def run() -> Response:
        _only(request)
        return _fhir(await auditevents.read(session, caller_of(request), seq))

    return await guard(run)


@router.post("/AuditEvent/_search")
async def audit_search_by_post(request: Request, session: ReadSession) -> Response:
    """The log searched with a form body, as any type's `_search` (before the write refusal
    below, whose `{seq}` would take `_search`)."""

    async def run() -> Response:
        caller = caller_of(request)
        query = list(request.query_params.multi_items()) + await _search_form(request)
        return _fhir(await auditevents.search(session, caller, base_url(request), query))

    return await guard(run)


@router.api_route("/AuditEvent", methods=["POST", "PUT", "DELETE", "PATCH"])
@router.api_route("/AuditEvent/{seq}", methods=["POST", "PUT", "DELETE", "PATCH"])
async def audit_write(request: Request) -> Response:
    issue = Issue("not-supported", "la bitácora de auditoría es de solo lectura")
    return _fhir(operation_outcome([issue]), 405, {"Allow": "GET"})


@router.get("/{kind}")
async def search(kind: str, request: Request, session: ReadSession, reader: Reader) -> Response:
    async def run() -> Response:
        query = list(request.query_params.multi_items())
        bundle = await searching.search(
            session, reader, caller_of(request), base_url(request), kind, query
        )
        return _fhir(bundle)

    return await guard(run)


# The most a POST search's form may hold (its parameters are as many as a URL's).
_SEARCH_FORM_BYTES = 64 * 1024


async def _search_form(request: Request) -> list[tuple[str, str]]:
    """The parameters of a POST search's application/x-www-form-urlencoded body."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise FhirError.one(
            415, "not-supported",
            "una búsqueda por POST lleva sus parámetros como application/x-www-form-urlencoded",
        )  # fmt: skip
    raw = await read_at_most(request.stream(), _SEARCH_FORM_BYTES)
    if len(raw) > _SEARCH_FORM_BYTES:
        raise FhirError.one(413, "too-costly", "los parámetros pasan de 64 KB")
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise FhirError.one(400, "invalid", "el cuerpo no es un formulario válido") from None


@router.post("/{kind}/_search")
async def search_by_post(
    kind: str, request: Request, session: ReadSession, reader: Reader
) -> Response:
    """Search with the parameters in an application/x-www-form-urlencoded body (R4
    §3.1.1.1), and in the URL too: the same search, rules and audit as GET."""

    async def run() -> Response:
        caller = caller_of(request)  # who asks, first: a 401 before any other answer
        query = list(request.query_params.multi_items()) + await _search_form(request)
        bundle = await searching.search(session, reader, caller, base_url(request), kind, query)
        return _fhir(bundle)

    return await guard(run)


@router.post("/{kind}")
async def create(kind: str, request: Request, session: Session, reader: Reader) -> Response:
    async def run() -> Response:
        _only(request)
        mirror.refuse_write(kind)
        caller = caller_of(request)
        doc = parse(await request.body(), kind)
        doc.pop("id", None)
        # Everything a create checks (validation, permission, basis) before any search: a
        # condition must not answer whom the create itself would refuse.
        new = await service.prepare_create(reader, caller, doc)
        condition = request.headers.get("if-none-exist")
        if condition is not None:
            found = await searching.existing(
                session, reader, caller, base_url(request), doc, condition, "If-None-Exist"
            )
            if found is not None:
                return _fhir(found, 200)
        await service.check_references(session, doc)
        stored = (await service.write_new(session, [new]))[0]
        return _fhir(stored.content, 201, _stored_headers(request, kind, stored))

    return await guard(run)


@router.get("/{kind}/_history")
async def type_history(
    kind: str, request: Request, session: ReadSession, reader: Reader
) -> Response:
    async def run() -> Response:
        page, since = _history_page(request, 50)
        bundle = await service.history(
            session, reader, caller_of(request), base_url(request), kind, None, page, since
        )
        return _fhir(bundle)

    return await guard(run)


@router.get("/{kind}/{fhir_id}")
async def read(
    kind: str, fhir_id: str, request: Request, session: ReadSession, reader: Reader
) -> Response:
    return await _read_response(request, session, reader, kind, fhir_id)


async def _read_response(
    request: Request, session: AsyncSession | None, reader: FastReader, kind: str, fhir_id: str
) -> Response:
    async def run() -> Response:
        _only(request)
        stored = await service.read(session, reader, caller_of(request), kind, fhir_id)
        return _fhir(stored.content, 200, _stored_headers(request, kind, stored, written=False))

    return await guard(run)


@router.put("/{kind}/{fhir_id}")
async def update(
    kind: str, fhir_id: str, request: Request, session: Session, reader: Reader
) -> Response:
    async def run() -> Response:
        _only(request)
        mirror.refuse_write(kind, fhir_id)
        caller = caller_of(request)
        doc = parse(await request.body(), kind)
        stored, created = await service.update(
            session,
            reader,
            caller,
            kind,
            fhir_id,
            doc,
            service.etag_version(request.headers.get("if-match"), "If-Match"),
        )
        return _fhir(
            stored.content, 201 if created else 200, _stored_headers(request, kind, stored)
        )

    return await guard(run)


@router.delete("/{kind}/{fhir_id}")
async def delete(
    kind: str, fhir_id: str, request: Request, session: Session, reader: Reader
) -> Response:
    async def run() -> Response:
        _only(request)
        await service.remove(session, reader, caller_of(request), kind, fhir_id)
        return Response(status_code=204)

    return await guard(run)


@router.get("/{kind}/{fhir_id}/_history")
async def instance_history(
    kind: str, fhir_id: str, request: Request, session: ReadSession, reader: Reader
) -> Response:
    async def run() -> Response:
        page, since = _history_page(request, 200)
        bundle = await service.history(
            session, reader, caller_of(request), base_url(request), kind, fhir_id, page, since
        )
        return _fhir(bundle)

    return await guard(run)


@router.get("/{kind}/{fhir_id}/_history/{version_id}")
async def vread(
    kind: str, fhir_id: str, version_id: str, request: Request, session: ReadSession,
    reader: Reader,
) -> Response:  # fmt: skip
    async def run() -> Response:
        _only(request)
        if not is_number(version_id, 9):
            raise FhirError.one(404, "not-found", f"no hay versión «{version_id}»")
        stored = await service.read(
            session, reader, caller_of(request), kind, fhir_id, int(version_id)
        )
        return _fhir(stored.content, 200, _stored_headers(request, kind, stored, written=False))

    return await guard(run)


_SECURITY = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def capability_statement(base: str) -> dict[str, Any]:
    """What this server does, no more (FHIR R4 CapabilityStatement)."""
    kinds = {"token": "token", "reference": "reference", "date": "date"}
    resources: list[dict[str, Any]] = [
        {
            **patient_search.capability(),
            "operation": [
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "GET Patient/[id]/$everything con _count (1 a 500) y "
                    "_offset solamente (start, end, _since y _type no se admiten): el Patient, "
                    "su Coverage y sus RelatedPerson del padrón en la primera página, las "
                    "entradas del expediente paginadas, y lo que cada página refiere fuera del "
                    "expediente (search.mode include, fuera de total).",
                },
                {
                    "name": "summary",
                    "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary",
                    "documentation": "GET Patient/[CURP]/$summary, sin parámetros: documento "
                    "(Bundle document) con la estructura del IPS; problemas, alergias y "
                    "medicamentos siempre; vacunas, resultados, procedimientos, signos vitales "
                    "y problemas pasados cuando los hay. No se declara conformidad con los "
                    "perfiles del IPS.",
                },
                {
                    "name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
                    "documentation": "Bulk Data (asíncrono: Prefer: respond-async; _type, _since). "
                    "GET Patient/$export: todos los pacientes, solo un sistema con scope "
                    "system/*.read. GET Patient/[CURP]/$export (extensión de este servidor): el "
                    "expediente de una persona, para quien puede abrirlo. Archivos NDJSON con el "
                    "mismo token.",
                },
            ],
        }
    ]
    for kind, params in sorted(PARAMS.items()):
        if kind in mirrored.KINDS:  # read and search only: appended below
            continue
        interactions = ["read", "vread", "update", "delete", "history-instance", "create",
                        "search-type"]  # fmt: skip
        if kind not in PATIENT_PATH:
            interactions.append("history-type")
        resources.append(
            {
                "type": kind,
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
                "documentation": "_sort por cualquiera de sus searchParam, _id o "
                "_lastUpdated (varios separados por comas; «-» para descendente); _count, "
                "paginación.",
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalUpdate": False,
                "conditionalDelete": "not-supported",
                "interaction": [{"code": c} for c in interactions],
                # Within one person's record only (a search with patient=).
                "searchInclude": [
                    f"{kind}:{n}" for n, p in sorted(params.items()) if p.kind == "reference"
                ]
                if kind in PATIENT_PATH
                else [],
                "searchRevInclude": sorted(
                    f"{other}:{n}"
                    for other, ps in PARAMS.items()
                    for n, p in ps.items()
                    if p.kind == "reference"
                    and other != kind
                    and other not in mirrored.KINDS
                    and _may_target(n, kind)
                )
                if kind in PATIENT_PATH
                else [],
                "searchParam": [
                    {"name": n, "type": kinds[p.kind]} for n, p in sorted(params.items())
                ]
                + [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}],
            }
        )
    resources += mirrored.capabilities()
    for kind in sorted(STORED_TYPES - set(PARAMS) - mirrored.KINDS):  # read by id, not searched
        resources.append(
            {
                "type": kind,
                "documentation": "Se guarda y se lee por id (sin búsqueda); pertenece al "
                "expediente del primer Patient al que refiere.",
                "interaction": [{"code": c} for c in ("read", "vread", "update", "delete",
                                                      "history-instance", "create")],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        )  # fmt: skip
    resources.append(
        {
            "type": "AuditEvent",
            "documentation": "La bitácora de auditoría (encadenada), de solo lectura.",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": "patient", "type": "reference"},
                {"name": "agent", "type": "token"},
            ],
        }
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "kind": "instance",
        "software": {"name": "Salud Universal", "version": __version__},
        "implementation": {"description": "Expediente compartido", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": [
                    {
                        "name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                        "documentation": "GET $export (Bulk Data, asíncrono): todos los "
                        "pacientes y, de los tipos fuera del compartimento Patient, lo que no "
                        "es del expediente de nadie (profesionales, medicamentos, "
                        "definiciones…); solo un sistema con scope system/*.read.",
                    }
                ],
                "security": {
                    "service": [{"coding": [{"system": _SECURITY, "code": "SMART-on-FHIR"}]}],
                    "description": "Token Bearer: clientes OAuth2 con scopes SMART "
                    "(client credentials) o personal con sesión.",
                },
                "resource": resources,
            }
        ],
    }


# --- the hot read as a plain Starlette route ---------------------------------------------
# GUIDE.md allows a plain endpoint on a hot path when its benchmark shows FastAPI's
# per-request layer costing too much (bench/RESULTS.md, "The FHIR record"). The route only
# matches what a read by id can be: a resource type (capitalised) and a FHIR id
# ([A-Za-z0-9.-]{1,64}, R4 datatypes.html#id), so `_history`, `$operations` and the bulk
# routes still reach the FastAPI router. The same handler runs, with the same errors.


class _ResourceType(Convertor[str]):
    regex = "(?!AuditEvent/)[A-Z][A-Za-z]{1,63}"  # AuditEvent is the audit log's own route

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _FhirId(Convertor[str]):
    regex = "[A-Za-z0-9.-]{1,64}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fhirtype", _ResourceType())
register_url_convertor("fhirid", _FhirId())


async def _read_fast(request: StarletteRequest) -> Response:
    kind, fhir_id = request.path_params["kind"], request.path_params["fhir_id"]
    reader: FastReader = request.app.state.reader
    try:
        await _json_only(request)
        if kind == "Patient" or kind in mirror.KINDS:  # read from the registry or catalog
            async with request.app.state.read_sessions() as session:
                return await _read_response(request, session, reader, kind, fhir_id)
        # A stored resource's current version is read through the FastReader: the session
        # is never used, so none is opened (an unused AsyncSession still costs its set-up).
        return await _read_response(request, None, reader, kind, fhir_id)
    except FhirError as exc:
        return await _render(request, exc)


def fast_routes() -> list[BaseRoute]:
    """Routes to put ahead of the FastAPI router (app.py)."""
    return [Route("/fhir/{kind:fhirtype}/{fhir_id:fhirid}", _read_fast, methods=["GET"])]
