"""The progress page (/avance) for supervisors and the ministry: the same figures as
/api/v1/enrollment/progress, with bar charts drawn here as inline SVG (no script, no chart
library, nothing from another site: the page works under the strict CSP) and CSV downloads
that use the page's session cookie."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from salud.access.context import Caller
from salud.access.principal import Principal
from salud.enrollment import progress
from salud.enrollment.progress_schemas import AreaProgress, ModuleThroughput
from salud.errors import Forbidden
from salud.kit.clock import MEXICO_CITY
from salud.web.pages import ReadSession, _page, _principal

router = APIRouter(include_in_schema=False)
StateKey = Annotated[str | None, Query(pattern=r"^[0-3][0-9]$")]
# The page's form sends an empty value for "the whole country".
StateChoice = Annotated[str, Query(alias="state", pattern=r"^([0-3][0-9])?$")]
Days = Annotated[int, Query(ge=1, le=progress.MAX_DAYS)]
CSV_TYPE = "text/csv; charset=utf-8"
PURPOSE = "avance"

# Chart geometry in SVG user units; the SVG scales to the width of the screen.
WIDTH, LABEL_W, VALUE_W, ROW_H = 400, 146, 60, 20
MODULE_ROW_H, MODULE_LABEL_W, MODULE_VALUE_W = 34, 96, 44
MAX_AREA_BARS, MAX_MODULE_ROWS = 40, 30


@dataclass(frozen=True, slots=True)
class Bar:
    y: float
    label: str
    title: str
    width: float
    value: str


@dataclass(frozen=True, slots=True)
class Column:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True, slots=True)
class ModuleRow:
    y: float
    label: str
    title: str
    columns: list[Column]
    total: int


def pct_text(value: float) -> str:
    if 0 < value < 0.01:
        return "<0.01 %"
    return f"{value:,.2f} %"


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def coverage_bars(areas: list[AreaProgress]) -> list[Bar]:
    """Horizontal bars, the longest for the highest coverage among the areas shown."""
    top = max((a.coverage_pct for a in areas), default=0.0) or 1.0
    span = WIDTH - LABEL_W - VALUE_W
    return [
        Bar(
            y=i * ROW_H,
            label=_short(a.name),
            title=f"{a.name}: {a.enrolled:,} de {a.population:,} ({pct_text(a.coverage_pct)})",
            width=round(span * a.coverage_pct / top, 2),
            value=pct_text(a.coverage_pct),
        )
        for i, a in enumerate(areas)
    ]


def throughput_rows(modules: list[ModuleThroughput]) -> tuple[list[ModuleRow], int]:
    """Each module's days as columns on one scale for all the modules shown (so they compare),
    and that scale: the busiest day among them."""
    scale = max((d.completed for m in modules for d in m.days), default=0) or 1
    span = WIDTH - MODULE_LABEL_W - MODULE_VALUE_W
    inner = MODULE_ROW_H - 8
    rows = []
    for i, m in enumerate(modules):
        step = span / max(len(m.days), 1)
        columns = []
        for j, d in enumerate(m.days):
            height = round(inner * d.completed / scale, 2)
            columns.append(
                Column(
                    x=round(MODULE_LABEL_W + j * step + step * 0.1, 2),
                    y=round(i * MODULE_ROW_H + 4 + inner - height, 2),
                    width=round(step * 0.8, 2),
                    height=height,
                    title=f"{m.code}, {d.day.strftime('%d/%m')}: {d.completed}",
                )
            )
        title = f"{m.code} {m.name}: {m.total:,} en el periodo; capacidad {m.daily_capacity}/día"
        rows.append(ModuleRow(i * MODULE_ROW_H, m.code, title, columns, m.total))
    return rows, scale


def _inegi_dir(request: Request) -> Path:
    folder: Path = request.app.state.settings.shared_data_dir / "inegi"
    return folder


def _snapshots(request: Request) -> bool:
    return bool(request.app.state.settings.progress_snapshots)


def _caller(principal: Principal, request: Request) -> Caller:
    return Caller(principal, request.app.state.audit, purpose=PURPOSE)


@router.get("/avance", response_class=HTMLResponse)
async def progress_page(
    request: Request, session: ReadSession, choice: StateChoice = "", days: Days = 14
) -> Response:
    state = choice or None
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/entrar?next=/avance", status_code=303)
    caller = _caller(principal, request)
    try:
        report = await progress.progress(
            session, caller, _inegi_dir(request), state, snapshots=_snapshots(request)
        )
        flow = await progress.throughput(
            session, caller, days, state, snapshots=_snapshots(request)
        )
    except Forbidden:  # the denial is in the audit log already
        return _page(request, "forbidden.html", {"principal": principal}, 403)
    if report.municipalities is not None:
        by_people = sorted(report.municipalities, key=lambda m: -m.population)
        charted: list[AreaProgress] = by_people[:MAX_AREA_BARS]
    else:
        charted = list(report.states)
    busiest = sorted(flow.modules, key=lambda m: (-m.total, m.code))[:MAX_MODULE_ROWS]
    rows, scale = throughput_rows(busiest)
    chosen = next((s for s in report.states if s.key == state), None)
    query = f"?state={state}" if state else ""
    context = {
        "principal": principal, "report": report, "flow": flow, "chosen": chosen,
        "bars": coverage_bars(charted), "charted": len(charted),
        "rows": rows, "scale": scale, "shown_modules": len(busiest),
        "geometry": {"width": WIDTH, "label": LABEL_W, "value": VALUE_W, "row": ROW_H,
                     "module_row": MODULE_ROW_H, "module_label": MODULE_LABEL_W,
                     "module_value": MODULE_VALUE_W},
        "pct": pct_text, "days": days, "day_text": _day_text,
        "counted": report.computed_at.astimezone(MEXICO_CITY).strftime("%d/%m/%Y %H:%M"),
        "refresh_minutes": round(request.app.state.settings.progress_refresh_seconds / 60, 1),
        "csv_areas": f"/avance/entidades.csv{query}",
        "csv_modules": f"/avance/modulos.csv?days={days}" + (f"&state={state}" if state else ""),
    }  # fmt: skip
    return _page(request, "progress.html", context)


def _day_text(day: date) -> str:
    return day.strftime("%d/%m")


def _csv_caller(request: Request) -> Caller | Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/entrar?next=/avance", status_code=303)
    return _caller(principal, request)


def _csv(text: str, filename: str) -> Response:
    return Response(
        text, media_type=CSV_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


@router.get("/avance/entidades.csv")
async def progress_csv(request: Request, session: ReadSession, state: StateKey = None) -> Response:
    caller = _csv_caller(request)
    if isinstance(caller, Response):
        return caller
    report = await progress.progress(
        session, caller, _inegi_dir(request), state, snapshots=_snapshots(request)
    )
    return _csv(progress.progress_csv(report), f"avance-{state}.csv" if state else "avance.csv")


@router.get("/avance/modulos.csv")
async def modules_csv(
    request: Request, session: ReadSession, days: Days = 14, state: StateKey = None
) -> Response:
    caller = _csv_caller(request)
    if isinstance(caller, Response):
        return caller
    flow = await progress.throughput(session, caller, days, state, snapshots=_snapshots(request))
    return _csv(progress.throughput_csv(flow), f"avance-modulos-{flow.end}.csv")
