"""/api/v1: data-protection requests (derechos ARCO)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from salud.access.permissions import Permission
from salud.api.deps import CurrentCaller, ReadSession, Session
from salud.facilities.service import unit_successors
from salud.identity import data_requests
from salud.identity.schemas import DataRequestAnswer, DataRequestCreate, DataRequestRead

router = APIRouter(tags=["derechos ARCO"])


@router.post(
    "/persons/{curp}/data-requests",
    status_code=status.HTTP_201_CREATED,
    summary="Presentar una solicitud de acceso, rectificación, cancelación u oposición",
    openapi_extra={"x-permission": Permission.DATA_REQUEST_FILE.value},
)
async def file_request(
    curp: str, body: DataRequestCreate, session: Session, caller: CurrentCaller
) -> DataRequestRead:
    return await data_requests.file(session, curp, body, caller, units=unit_successors)


@router.get(
    "/persons/{curp}/data-requests",
    summary="Mis solicitudes ARCO y su estado",
    openapi_extra={"x-permission": Permission.DATA_REQUEST_FILE.value},
)
async def person_requests(
    curp: str, session: ReadSession, caller: CurrentCaller
) -> list[DataRequestRead]:
    return await data_requests.of_person(session, curp, caller)


@router.get(
    "/data-requests",
    summary="Solicitudes ARCO (pendientes por omisión), por fecha límite",
    openapi_extra={"x-permission": Permission.DATA_REQUEST_MANAGE.value},
)
async def pending_requests(
    session: ReadSession,
    caller: CurrentCaller,
    overdue: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: Literal["received", "granted", "denied", "all"] = "received",
) -> list[DataRequestRead]:
    return await data_requests.pending(
        session, caller, overdue_only=overdue, limit=limit, status=status, offset=offset
    )


@router.get(
    "/data-requests/{folio}",
    summary="Una solicitud ARCO, respondida o no (seguimiento de la oficina)",
    openapi_extra={"x-permission": Permission.DATA_REQUEST_MANAGE.value},
)
async def request_by_folio(
    folio: Annotated[str, Path(max_length=40)], session: ReadSession, caller: CurrentCaller
) -> DataRequestRead:
    return await data_requests.by_folio(session, folio, caller)


@router.post(
    "/data-requests/{folio}/answer",
    summary="Responder una solicitud ARCO (una rectificación otorgada crea una nueva versión)",
    openapi_extra={"x-permission": Permission.DATA_REQUEST_MANAGE.value},
)
async def answer_request(
    folio: str, body: DataRequestAnswer, session: Session, caller: CurrentCaller
) -> DataRequestRead:
    return await data_requests.answer(session, folio, body, caller, units=unit_successors)
