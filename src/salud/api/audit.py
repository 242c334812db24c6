"""/api/v1: the audit log for auditors, and "who looked at my data" for each person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from salud.access import views
from salud.access.permissions import Permission
from salud.access.schemas import AccessPage
from salud.api.deps import CurrentCaller, ReadSession

router = APIRouter(tags=["auditoría"])


@router.get(
    "/persons/{curp}/accesses",
    summary="Quién consultó mis datos: cada acceso al registro de una persona",
    openapi_extra={"x-permission": Permission.ACCESS_LOG_READ.value},
)
async def person_accesses(
    curp: str,
    session: ReadSession,
    caller: CurrentCaller,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Entradas anteriores a esta")
    ] = None,
) -> AccessPage:
    return await views.accesses_to_person(session, caller, curp, limit=limit, before=before)


@router.get(
    "/audit/events",
    summary="Bitácora de auditoría (más reciente primero)",
    openapi_extra={"x-permission": Permission.AUDIT_READ.value},
)
async def audit_events(
    session: ReadSession,
    caller: CurrentCaller,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
) -> AccessPage:
    return await views.audit_events(
        session, caller, limit=limit, before=before, actor=actor, action=action
    )
