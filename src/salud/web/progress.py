"""The progress page (/avance) for supervisors and the ministry: the same figures as
/api/v1/enrollment/progress, with bar charts drawn here as inline SVG (no script, no chart
library, nothing from another site: the page works under the strict CSP) and CSV downloads
that use the page's session cookie."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.access.principal import Principal
from salud.enrollment import progress
from salud.enrollment.progress_schemas import AreaProgress, ModuleThroughput
from salud.errors import DomainError, Forbidden, InvalidInput
from salud.kit.clock import MEXICO_CITY
from salud.web.forms import reason_of
from salud.web.pages import ReadSession, _page, _principal

router = APIRouter(include_in_schema=False)
# The query's values are read as text and checked here, not by FastAPI, so that a bad one
# gets a page with the reason (FastAPI's own answer would be JSON).
FIELD_LABELS = {"state": "Entidad", "days": "Días"}
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


def coverage_bars(areas: list[AreaProgress]) -> tuple[list[Bar], float]:
    """Horizontal bars, the longest for the highest coverage among the areas shown, and that
    coverage (the scale: a full bar is not 100 %)."""
    highest = max((a.coverage_pct for a in areas), default=0.0)
    top = highest or 1.0
    span = WIDTH - LABEL_W - VALUE_W
    bars = [
        Bar(
            y=i * ROW_H,
            label=_short(a.name),
            title=f"{a.name}: {a.enrolled:,} de {a.population:,} ({pct_text(a.coverage_pct)})",
            width=round(span * a.coverage_pct / top, 2),
            value=pct_text(a.coverage_pct),
        )
        for i, a in enumerate(areas)
    ]
    return bars, highest


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


async def _allowed(caller: Caller) -> None:
    await caller.allow(Permission.ENROLLMENT_PROGRESS, progress.ACTION, "progress")


def _state(text: str) -> str | None:
    """The page's form sends an empty value for "the whole country"."""
    value = text.strip()
    if not value:
        return None
    if value not in progress.STATE_KEYS:
        raise InvalidInput.on("state", f"«{_shown(value)}» no es una clave de entidad del INEGI "
                              "(01 a 32)")  # fmt: skip
    return value


def _days(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= progress.MAX_DAYS:
        raise InvalidInput.on(
            "days", f"«{_shown(value)}» no es un número de días de 1 a {progress.MAX_DAYS}"
        )
    return int(value)


def _shown(value: str) -> str:
    return value if len(value) <= 20 else value[:19] + "…"


def _refusal(request: Request, principal: Principal, exc: DomainError) -> Response:
    """The page's answer to a refused read (denied: already in the audit log) or bad input:
    HTML with the reason, never JSON."""
    if isinstance(exc, Forbidden):
        return _page(request, "forbidden.html", {"principal": principal}, 403)
    problems = [f"{FIELD_LABELS.get(p.field, p.field)} ({p.field}): {p.reason}"
                for p in exc.problems]  # fmt: skip
    message = "; ".join(problems) if problems else reason_of(exc)
    return _page(request, "progress.html", {"principal": principal, "error": message}, exc.status)


@router.get("/avance", response_class=HTMLResponse)
async def progress_page(
    request: Request, session: ReadSession, state: str = "", days: str = "14"
) -> Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/entrar?next=/avance", status_code=303)
    caller = _caller(principal, request)
    try:
        await _allowed(caller)  # who may ask, before what they asked is judged
        chosen_state, period = _state(state), _days(days)
        report, flow = await progress.page(
            session, caller, _inegi_dir(request), chosen_state, period,
            snapshots=_snapshots(request),
        )  # fmt: skip
    except DomainError as exc:
        return _refusal(request, principal, exc)
    if report.municipalities is not None:
        by_people = sorted(report.municipalities, key=lambda m: -m.population)
        charted: list[AreaProgress] = by_people[:MAX_AREA_BARS]
    else:
        charted = list(report.states)
    busiest = sorted(flow.modules, key=lambda m: (-m.total, m.code))[:MAX_MODULE_ROWS]
    rows, scale = throughput_rows(busiest)
    bars, top = coverage_bars(charted)
    chosen = next((s for s in report.states if s.key == chosen_state), None)
    query = f"?state={chosen_state}" if chosen_state else ""
    context = {
        "principal": principal, "report": report, "flow": flow, "chosen": chosen,
        "bars": bars, "bar_scale": top, "charted": len(charted),
        "rows": rows, "scale": scale, "shown_modules": len(busiest),
        "geometry": {"width": WIDTH, "label": LABEL_W, "value": VALUE_W, "row": ROW_H,
                     "module_row": MODULE_ROW_H, "module_label": MODULE_LABEL_W,
                     "module_value": MODULE_VALUE_W},
        "pct": pct_text, "days": period, "day_text": _day_text,
        "counted": report.computed_at.astimezone(MEXICO_CITY).strftime("%d/%m/%Y %H:%M"),
        "refresh_minutes": round(request.app.state.settings.progress_refresh_seconds / 60, 1),
        "csv_areas": f"/avance/entidades.csv{query}",
        "csv_modules": f"/avance/modulos.csv?days={period}"
        + (f"&state={chosen_state}" if chosen_state else ""),
    }  # fmt: skip
    return _page(request, "progress.html", context)


def _day_text(day: date) -> str:
    return day.strftime("%d/%m")


def _csv_caller(request: Request) -> tuple[Principal, Caller] | Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/entrar?next=/avance", status_code=303)
    return principal, _caller(principal, request)


def _csv(text: str, filename: str) -> Response:
    return Response(
        text, media_type=CSV_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


@router.get("/avance/entidades.csv")
async def progress_csv(request: Request, session: ReadSession, state: str = "") -> Response:
    signed = _csv_caller(request)
    if isinstance(signed, Response):
        return signed
    principal, caller = signed
    try:
        await _allowed(caller)  # who may ask, before what they asked is judged
        chosen = _state(state)
        report = await progress.progress(
            session, caller, _inegi_dir(request), chosen, snapshots=_snapshots(request)
        )
    except DomainError as exc:
        return _refusal(request, principal, exc)
    return _csv(progress.progress_csv(report), f"avance-{chosen}.csv" if chosen else "avance.csv")


@router.get("/avance/modulos.csv")
async def modules_csv(
    request: Request, session: ReadSession, days: str = "14", state: str = ""
) -> Response:
    signed = _csv_caller(request)
    if isinstance(signed, Response):
        return signed
    principal, caller = signed
    try:
        await _allowed(caller)  # who may ask, before what they asked is judged
        chosen, period = _state(state), _days(days)
        flow = await progress.throughput(
            session, caller, period, chosen, snapshots=_snapshots(request)
        )
    except DomainError as exc:
        return _refusal(request, principal, exc)
    return _csv(progress.throughput_csv(flow), f"avance-modulos-{flow.end}.csv")
