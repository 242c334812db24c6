"""Health units (CLUES): search, detail, history and the nearest units to a point."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from salud.access.permissions import Permission
from salud.api.deps import CurrentCaller, ReadSession
from salud.facilities import service
from salud.facilities.nearest import IndexCache
from salud.facilities.schemas import (
    HealthUnitHistory,
    HealthUnitPage,
    HealthUnitRead,
    NearestResults,
)

router = APIRouter(prefix="/facilities", tags=["unidades"])
# The catalog holds no personal data (public DGIS information), so its permission is checked
# here in the adapter; every use case on personal data checks in its service (Caller.allow).
_READ = {"x-permission": Permission.FACILITY_READ.value}


def index_cache(request: Request) -> IndexCache:
    """One nearest-unit index per application, created on first use."""
    cache: IndexCache | None = getattr(request.app.state, "facilities_index", None)
    if cache is None:
        cache = IndexCache()
        request.app.state.facilities_index = cache
    return cache


@router.get(
    "/nearest",
    summary="Unidades de salud más cercanas a un punto",
    response_model=NearestResults,
    openapi_extra=_READ,
)
async def nearest(
    request: Request,
    session: ReadSession,
    caller: CurrentCaller,
    lat: Annotated[float, Query(description="Latitud (grados, WGS84)")],
    lng: Annotated[float, Query(description="Longitud (grados, WGS84)")],
    k: Annotated[int, Query(description="Cuántas unidades (1 a 50)")] = 5,
    max_km: Annotated[float | None, Query(description="Distancia máxima en km")] = None,
    institution: Annotated[
        list[str] | None,
        Query(description="Claves de institución CLUES (IMB, IMS, IST, SSA...); repetible"),
    ] = None,
    level: Annotated[int | None, Query(description="Nivel de atención: 1, 2 o 3")] = None,
    in_operation: Annotated[
        bool | None, Query(description="Solo unidades en operación (por omisión, sí)")
    ] = True,
    open_now: Annotated[
        bool,
        Query(
            description="Solo unidades que se sabe abiertas en este momento (quedan fuera las "
            "de horario desconocido, y en un día de descanso obligatorio las que no abren "
            "todos los días)"
        ),
    ] = False,
) -> NearestResults:
    query = service.nearest_query(
        lat,
        lng,
        k=k,
        max_km=max_km,
        institutions=institution,
        level=level,
        in_operation=in_operation,
        open_now=open_now,
    )
    caller.principal.require(Permission.FACILITY_READ)
    return await service.nearest(session, query, index_cache(request))


@router.get(
    "", summary="Buscar unidades de salud", response_model=HealthUnitPage, openapi_extra=_READ
)
async def search(
    session: ReadSession,
    caller: CurrentCaller,
    state: Annotated[
        str | None, Query(description="Estado: letras de la CLUES (HG, DF...)")
    ] = None,
    institution: Annotated[str | None, Query(description="Clave de institución CLUES")] = None,
    name: Annotated[
        str | None, Query(description="Parte del nombre (sin importar acentos)")
    ] = None,
    limit: Annotated[int, Query(description="Unidades por página")] = 50,
    offset: Annotated[int, Query(description="Unidades a saltar")] = 0,
) -> HealthUnitPage:
    caller.principal.require(Permission.FACILITY_READ)
    return await service.search_units(
        session, state=state, institution=institution, name=name, limit=limit, offset=offset
    )


@router.get(
    "/{clues}",
    summary="Una unidad de salud por su clave CLUES",
    response_model=HealthUnitRead,
    openapi_extra=_READ,
)
async def get_unit(session: ReadSession, clues: str, caller: CurrentCaller) -> HealthUnitRead:
    caller.principal.require(Permission.FACILITY_READ)
    return await service.get_unit(session, clues)


@router.get(
    "/{clues}/history",
    summary="Versiones anteriores de una unidad",
    response_model=HealthUnitHistory,
    openapi_extra=_READ,
)
async def history(session: ReadSession, clues: str, caller: CurrentCaller) -> HealthUnitHistory:
    caller.principal.require(Permission.FACILITY_READ)
    return await service.unit_history(session, clues)
