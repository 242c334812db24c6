"""/api/v1/persons: the registry over HTTP. Thin: validate, call the service, render."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from starlette.requests import Request as StarletteRequest
from starlette.routing import BaseRoute, Route

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.api.deps import (
    CurrentCaller,
    Reader,
    ReadSession,
    Session,
    caller_of,
    refuse_unknown_query,
)
from salud.api.facilities import index_cache
from salud.errors import FieldProblem, InvalidInput
from salud.facilities import service as facilities_service
from salud.facilities.institutions import institutions_for_affiliations
from salud.facilities.schemas import NearestResults
from salud.facilities.service import unit_successors
from salud.identity import guardians, service
from salud.identity.schemas import (
    GuardianEnd,
    GuardianLink,
    GuardianRead,
    PersonCreate,
    PersonPage,
    PersonRead,
    PersonUpdate,
    PersonVersionRead,
)
from salud.kit.clock import today_mx
from salud.storage.fastread import FastReader

router = APIRouter(prefix="/persons", tags=["padrón"])


def _etag(version: int) -> str:
    return f'W/"{version}"'


def _parse_if_match(value: str | None) -> int:
    if value is None:
        raise InvalidInput(
            "falta el encabezado If-Match con la versión que se leyó (ETag)",
            [FieldProblem("If-Match", "obligatorio para modificar")],
        )
    raw = value.strip().removeprefix("W/").strip('"')
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):  # not "²", not 5,000 digits
        raise InvalidInput.on("If-Match", 'debe ser el ETag recibido, p. ej. W/"3"')
    return int(raw)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Registrar una persona",
    responses={409: {"description": "La CURP ya está registrada"}},
    openapi_extra={"x-permission": Permission.PERSON_CREATE.value},
)
async def create_person(
    body: PersonCreate, session: Session, response: Response, caller: CurrentCaller
) -> PersonRead:
    person = await service.register(session, body, caller, units=unit_successors)
    response.headers["ETag"] = _etag(person.version)
    response.headers["Location"] = f"/api/v1/persons/{person.curp}"
    return person


@router.get(
    "",
    summary="Buscar personas",
    openapi_extra={"x-permission": Permission.PERSON_SEARCH.value},
)
async def search_persons(
    session: ReadSession,
    reader: Reader,
    caller: CurrentCaller,
    curp: str | None = None,
    first_surname: Annotated[str | None, Query(max_length=100)] = None,
    given_names: Annotated[str | None, Query(max_length=100)] = None,
    birth_date: date | None = None,
    birth_state: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
    state: Annotated[
        str | None, Query(pattern=r"^\d{2}$", description="Entidad de residencia (INEGI)")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PersonPage:
    return await service.search(
        session,
        reader,
        curp=curp,
        first_surname=first_surname,
        given_names=given_names,
        birth_date=birth_date,
        birth_state=birth_state,
        address_state=state,
        caller=caller,
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/{curp}",
    summary="Leer una persona por CURP",
    response_model=PersonRead,
    openapi_extra={"x-permission": Permission.PERSON_READ.value},
)
async def read_person(curp: str, reader: Reader, caller: CurrentCaller) -> Response:
    """Documents the read; requests are served by `read_person_fast` below."""
    return await _read(reader, curp, caller)


async def _read(reader: FastReader, curp: str, caller: Caller) -> Response:
    # Serialized once by pydantic's Rust core and not validated again on the way out
    # (GUIDE.md: validate on the way in, never again on the way out).
    body, version = await service.get_json(reader, curp, caller)
    return Response(body, media_type="application/json", headers={"ETag": _etag(version)})


async def read_person_fast(request: StarletteRequest) -> Response:
    """The hot read as a plain Starlette endpoint (GUIDE.md allows it where the benchmark
    shows FastAPI's per-request layer costing too much: bench/RESULTS.md). Same service call,
    same errors (the app's exception handlers render them)."""
    refuse_unknown_query(request, frozenset())  # as every /api/v1 router does (known_query)
    return await _read(request.app.state.reader, request.path_params["curp"], caller_of(request))


def fast_routes(prefix: str) -> list[BaseRoute]:
    """Routes to put ahead of the FastAPI router; the FastAPI twins stay for the OpenAPI
    document. A test checks the served answer matches the documented model."""
    return [Route(f"{prefix}/persons/{{curp}}", read_person_fast, methods=["GET"])]


@router.patch(
    "/{curp}",
    summary="Modificar una persona (nueva versión)",
    responses={412: {"description": "La versión enviada en If-Match ya no es la actual"}},
    openapi_extra={"x-permission": Permission.PERSON_UPDATE.value},
)
async def update_person(
    curp: str,
    body: PersonUpdate,
    session: Session,
    response: Response,
    caller: CurrentCaller,
    if_match: Annotated[str | None, Header(description='ETag leído, p. ej. W/"3"')] = None,
) -> PersonRead:
    person = await service.change(
        session, curp, body, _parse_if_match(if_match), caller, units=unit_successors
    )
    response.headers["ETag"] = _etag(person.version)
    return person


@router.get(
    "/{curp}/nearest-units",
    summary="Unidades cercanas que atienden a la persona",
    description="Según sus afiliaciones vigentes hoy; desde el punto dado o, si no se da, "
    "desde la localidad (o cabecera municipal) de su domicilio.",
    openapi_extra={"x-permission": Permission.PERSON_READ.value},
)
async def nearest_units(
    curp: str,
    request: Request,
    session: ReadSession,
    reader: Reader,
    caller: CurrentCaller,
    lat: Annotated[float | None, Query(description="Latitud; si se omite, el domicilio")] = None,
    lng: Annotated[float | None, Query(description="Longitud; si se omite, el domicilio")] = None,
    k: int = 5,
    open_now: bool = False,
) -> NearestResults:
    person = await service.get(reader, curp, caller)
    if (lat is None) != (lng is None):
        raise InvalidInput.on("lng" if lng is None else "lat", "envíe latitud y longitud juntas")
    if lat is None or lng is None:
        address = person.address
        point = (
            facilities_service.address_point(address.state, address.municipality, address.locality)
            if address
            else None
        )
        if point is None:
            raise InvalidInput.on(
                "lat", "el domicilio registrado no tiene municipio INEGI: indique lat y lng"
            )
        lat, lng, _ = point
    query = facilities_service.nearest_query(
        lat,
        lng,
        k=k,
        institutions=institutions_for_affiliations(
            service.entitled_institutions(person, today_mx())
        ),
        open_now=open_now,
    )
    return await facilities_service.nearest(session, query, index_cache(request))


@router.get(
    "/{curp}/history",
    summary="Historial de versiones: quién, cuándo, qué cambió",
    openapi_extra={"x-permission": Permission.PERSON_HISTORY.value},
)
async def person_history(
    curp: str, session: ReadSession, caller: CurrentCaller
) -> list[PersonVersionRead]:
    return await service.history(session, curp, caller)


@router.get(
    "/{curp}/guardians",
    summary="Madre, padre o tutor vinculados a la persona (con su historia)",
    description="Los vínculos se hacen al concluir el registro de un menor o los hace el "
    "personal del registro; nunca se borran: uno que termina queda con quién, cuándo y por qué. "
    "`active`: vigente hoy (sin terminar y la persona aún es menor de edad).",
    openapi_extra={"x-permission": Permission.PERSON_READ.value},
)
async def list_guardians(
    curp: str, session: ReadSession, reader: Reader, caller: CurrentCaller
) -> list[GuardianRead]:
    return await guardians.list_guardians(session, reader, curp, caller)


@router.post(
    "/{curp}/guardians",
    status_code=status.HTTP_201_CREATED,
    summary="Vincular a la madre, padre o tutor de un menor (documentos revisados)",
    openapi_extra={"x-permission": Permission.GUARDIAN_LINK.value},
)
async def link_guardian(
    curp: str, body: GuardianLink, session: Session, caller: CurrentCaller
) -> list[GuardianRead]:
    return await guardians.add(session, curp, body, caller)


@router.post(
    "/{curp}/guardians/{guardian_curp}/end",
    summary="Terminar un vínculo vigente, con el motivo (el registro queda)",
    openapi_extra={"x-permission": Permission.GUARDIAN_END.value},
)
async def end_guardian(
    curp: str, guardian_curp: str, body: GuardianEnd, session: Session, caller: CurrentCaller
) -> GuardianRead:
    return await guardians.end(session, curp, guardian_curp, body, caller)
