"""The progress dashboard over HTTP: figures by state (or a state's municipalities) and each
module's daily throughput, as JSON and as CSV. Counts only; the service checks the permission
before anything else and audits the read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from salud.access.permissions import Permission
from salud.api.deps import CurrentCaller, ReadSession
from salud.enrollment import progress
from salud.enrollment.progress_schemas import ProgressRead, ThroughputRead

router = APIRouter(prefix="/enrollment/progress", tags=["credencialización"])
StateKey = Annotated[
    str | None, Query(pattern=r"^[0-3][0-9]$", description="Clave INEGI de la entidad")
]
Days = Annotated[int, Query(ge=1, le=progress.MAX_DAYS, description="Días hasta hoy")]
CSV_TYPE = "text/csv; charset=utf-8"
_X: dict[str, Any] = {"x-permission": Permission.ENROLLMENT_PROGRESS.value}
_CSV: dict[str, Any] = {**_X, "responses": {"200": {"content": {"text/csv": {}}}}}


def inegi_dir(request: Request) -> Path:
    folder: Path = request.app.state.settings.shared_data_dir / "inegi"
    return folder


def snapshots(request: Request) -> bool:
    return bool(request.app.state.settings.progress_snapshots)


def csv_response(text: str, filename: str) -> Response:
    return Response(
        text, media_type=CSV_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


@router.get(
    "", summary="Avance: personas credencializadas contra población, citas y tarjetas",
    openapi_extra=_X,
)  # fmt: skip
async def overview(
    request: Request, session: ReadSession, caller: CurrentCaller, state: StateKey = None
) -> ProgressRead:
    return await progress.progress(
        session, caller, inegi_dir(request), state, snapshots=snapshots(request)
    )


@router.get(
    ".csv", summary="Avance en CSV (por entidad, o por municipio con ?state=)",
    response_class=Response, openapi_extra=_CSV,
)  # fmt: skip
async def overview_csv(
    request: Request, session: ReadSession, caller: CurrentCaller, state: StateKey = None
) -> Response:
    report = await progress.progress(
        session, caller, inegi_dir(request), state, snapshots=snapshots(request)
    )
    name = f"avance-{state}.csv" if state else "avance.csv"
    return csv_response(progress.progress_csv(report), name)


@router.get(
    "/modules", summary="Registros concluidos por módulo y día", openapi_extra=_X,
)  # fmt: skip
async def modules(
    request: Request,
    session: ReadSession,
    caller: CurrentCaller,
    days: Days = 14,
    state: StateKey = None,
) -> ThroughputRead:
    return await progress.throughput(session, caller, days, state, snapshots=snapshots(request))


@router.get(
    "/modules.csv", summary="Registros concluidos por módulo y día, en CSV",
    response_class=Response, openapi_extra=_CSV,
)  # fmt: skip
async def modules_csv(
    request: Request,
    session: ReadSession,
    caller: CurrentCaller,
    days: Days = 14,
    state: StateKey = None,
) -> Response:
    report = await progress.throughput(session, caller, days, state, snapshots=snapshots(request))
    return csv_response(progress.throughput_csv(report), f"avance-modulos-{report.end}.csv")
