"""Progress of the drive (avance de la credencialización): enrolled persons against the INEGI
population by state and municipality, appointments, each module's daily throughput, and the
cards that have not reached their holders yet; as JSON models and as CSV.

Only counts leave this module, never a CURP or a name, so no per-person audit entry is due;
the read itself is audited once. Coverage counts a person where their registered address is,
not where they enrolled: the population it is compared with lives at those addresses."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.enrollment import repository
from salud.enrollment.population import StatePopulation, population
from salud.enrollment.progress_schemas import (
    AppointmentFigures,
    AreaProgress,
    CardFigures,
    DayCount,
    ModuleThroughput,
    ProgressRead,
    StateProgress,
    ThroughputRead,
)
from salud.errors import InvalidInput
from salud.kit.clock import today_mx, utcnow

ACTION = "enrollment:progress:read"
POPULATION_SOURCE = "INEGI, Censo de Población y Vivienda 2020 (municipios_inegi.csv)"
NATIONAL_KEY, NATIONAL_NAME = "00", "Estados Unidos Mexicanos"  # INEGI's key for the country
WAITING = ("issued", "printed", "ready_for_pickup")
MAX_DAYS = 90
KEEP = 3  # snapshots kept (the newest is read)
log = structlog.get_logger("salud.progress")


# --- figures ---------------------------------------------------------------------------------


def coverage_pct(enrolled: int, people: int) -> float:
    return round(100 * enrolled / people, 6) if people else 0.0


def _appointments(by_status: Mapping[str, int], lapsed: int) -> AppointmentFigures:
    """A booking still `booked` whose day has passed is a no-show: the person did not come
    (or enrolled elsewhere without it, which leaves it untouched)."""
    return AppointmentFigures(
        booked=sum(by_status.values()),
        pending=by_status.get("booked", 0) - lapsed,
        kept=by_status.get("kept", 0),
        cancelled=by_status.get("cancelled", 0),
        no_show=by_status.get("no_show", 0) + lapsed,
    )


def _cards(by_status: Mapping[str, int], overdue_batches: int) -> CardFigures:
    to_print, printed = by_status.get("issued", 0), by_status.get("printed", 0)
    ready = by_status.get("ready_for_pickup", 0)
    return CardFigures(
        to_print=to_print,
        printed=printed,
        ready_for_pickup=ready,
        waiting=to_print + printed + ready,
        overdue_batches=overdue_batches,
    )


def _for_state(counts: Mapping[tuple[str, str], int], state: str | None) -> dict[str, int]:
    """status -> count for one state (None: every state together)."""
    out: dict[str, int] = {}
    for (key, status), n in counts.items():
        if state is None or key == state:
            out[status] = out.get(status, 0) + n
    return out


def _state_total(counts: Mapping[str, int], state: str | None) -> int:
    """One state's count (None: every state together)."""
    return sum(counts.values()) if state is None else counts.get(state, 0)


@dataclass(frozen=True)
class Figures:
    """Every count the dashboard shows, taken together: live, or from a snapshot."""

    computed_at: datetime
    day: date  # the civil day in Mexico they were counted on (lapsed bookings are before it)
    enrolled: dict[tuple[str | None, str | None], int]  # by registered state and municipality
    appointments: dict[tuple[str, str], int]  # by the module's state and status
    lapsed: dict[str, int]  # booked for a day before `day`, by the module's state
    cards: dict[tuple[str, str], int]  # waiting cards by the enrolling module's state, status
    completed: dict[tuple[int, date], int]  # by module and visit day, the last MAX_DAYS days
    overdue: dict[str, int]  # print batches past their due day, by the module's state

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "enrolled": [[s, m, n] for (s, m), n in self.enrolled.items()],
            "appointments": [[s, st, n] for (s, st), n in self.appointments.items()],
            "lapsed": [[s, n] for s, n in self.lapsed.items()],
            "cards": [[s, st, n] for (s, st), n in self.cards.items()],
            "completed": [[m, d.isoformat(), n] for (m, d), n in self.completed.items()],
            "overdue": [[s, n] for s, n in self.overdue.items()],
        }

    @classmethod
    def from_json(cls, computed_at: datetime, doc: dict[str, Any]) -> Figures:
        return cls(
            computed_at=computed_at,
            day=date.fromisoformat(doc["day"]),
            enrolled={(s, m): n for s, m, n in doc["enrolled"]},
            appointments={(s, st): n for s, st, n in doc["appointments"]},
            lapsed=dict(doc["lapsed"]),
            cards={(s, st): n for s, st, n in doc["cards"]},
            completed={(m, date.fromisoformat(d)): n for m, d, n in doc["completed"]},
            overdue=dict(doc.get("overdue", [])),  # snapshots taken before it was counted
        )


async def compute(session: AsyncSession) -> Figures:
    """Count everything from the tables (minutes at the national scale: see `refresh`)."""
    day = today_mx()
    since = day - timedelta(days=MAX_DAYS - 1)
    return Figures(
        computed_at=utcnow(),
        day=day,
        enrolled=await repository.enrolled_by_area(session),
        appointments=await repository.appointments_by_state(session),
        lapsed=await repository.lapsed_appointments_by_state(session, day),
        cards=await repository.cards_by_module_state(session, WAITING),
        completed=await repository.completed_by_module_day(session, since, day, None),
        overdue=await repository.overdue_batches_by_state(session, day),
    )


async def refresh(
    sessions: async_sessionmaker[AsyncSession], *, unless_newer_than: timedelta | None = None
) -> Figures | None:
    """Take a snapshot of the figures (one transaction); None if another process is counting
    one right now (an advisory lock on PostgreSQL), or if the latest one is newer than
    `unless_newer_than` (another process took it)."""
    async with sessions() as session:
        if not await repository.try_refresh_lock(session):
            return None
        if unless_newer_than is not None:
            latest = await repository.latest_snapshot(session)
            if latest is not None and utcnow() - latest.taken_at < unless_newer_than:
                return None
        figures = await compute(session)
        await repository.save_snapshot(session, figures.computed_at, figures.to_json(), KEEP)
        await session.commit()
    return figures


_parsed: dict[int, Figures] = {}  # the latest snapshot read, by id (one per process)


async def figures_of(session: AsyncSession, snapshots: bool) -> Figures:
    """The latest snapshot when the server takes them (and one was taken), else live. A
    snapshot is read and parsed once per process: then each request asks only for the
    latest id (the national snapshot holds ~200,000 module-day counts)."""
    if snapshots:
        latest = await repository.latest_snapshot_id(session)
        if latest is not None:
            if latest not in _parsed:
                row = await repository.snapshot(session, latest)
                if row is not None:
                    _parsed.clear()
                    _parsed[latest] = Figures.from_json(row.taken_at, row.figures)
            if latest in _parsed:
                return _parsed[latest]
    return await compute(session)


async def refresher(sessions: async_sessionmaker[AsyncSession], every: timedelta) -> None:
    """The server's background task: a snapshot now and then every `every` (the app's
    lifespan starts it when SALUD_PROGRESS_REFRESH_SECONDS > 0). A failed refresh is logged
    and tried again at the next turn; the dashboard keeps showing the latest snapshot."""
    while True:
        try:
            await refresh(sessions, unless_newer_than=every / 2)
        except Exception:
            log.exception("progress_refresh_failed")
        await asyncio.sleep(every.total_seconds())


# The INEGI keys of the 32 states (the catalog's, as population() reads them).
STATE_KEYS = frozenset(f"{i:02d}" for i in range(1, 33))


def _check_state(state: str | None) -> None:
    if state is not None and state not in STATE_KEYS:
        raise InvalidInput.on("state", "no es una clave de entidad del INEGI (01 a 32)")


def _check_days(days: int) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput.on("days", f"de 1 a {MAX_DAYS} días")


async def progress(
    session: AsyncSession, caller: Caller, inegi_dir: Path, state: str | None = None,
    *, snapshots: bool = False,
) -> ProgressRead:  # fmt: skip
    """The country and each state; with `state`, also that state's municipalities."""
    await caller.allow(Permission.ENROLLMENT_PROGRESS, ACTION, "progress")
    _check_state(state)
    report = _progress(await figures_of(session, snapshots), population(inegi_dir), state)
    await caller.record(ACTION, "progress", subject_id="states", detail={"state": state})
    return report


async def throughput(
    session: AsyncSession, caller: Caller, days: int = 14, state: str | None = None,
    *, snapshots: bool = False,
) -> ThroughputRead:  # fmt: skip
    """Completed enrollments per module and day of the visit over the last `days` days.
    Modules that are open, or that enrolled someone in the period, are listed."""
    await caller.allow(Permission.ENROLLMENT_PROGRESS, ACTION, "progress")
    _check_days(days)
    _check_state(state)
    report = await _throughput(session, await figures_of(session, snapshots), days, state)
    await caller.record(
        ACTION, "progress", subject_id="modules", detail={"state": state, "days": days}
    )
    return report


async def page(
    session: AsyncSession, caller: Caller, inegi_dir: Path, state: str | None = None,
    days: int = 14, *, snapshots: bool = False,
) -> tuple[ProgressRead, ThroughputRead]:  # fmt: skip
    """What the page /avance shows (the answers of `progress` and `throughput`, from the same
    figures): one read, one audit entry."""
    await caller.allow(Permission.ENROLLMENT_PROGRESS, ACTION, "progress")
    _check_state(state)
    _check_days(days)
    f = await figures_of(session, snapshots)
    report = _progress(f, population(inegi_dir), state)
    flow = await _throughput(session, f, days, state)
    await caller.record(
        ACTION, "progress", subject_id="page", detail={"state": state, "days": days}
    )
    return report, flow


def _progress(f: Figures, states: Mapping[str, StatePopulation], state: str | None) -> ProgressRead:
    known = {s.key: {m.key for m in s.municipalities} for s in states.values()}
    enrolled: dict[str | None, int] = {}
    # By state, the enrolled whose address has that state but no municipality (or one that
    # INEGI's catalog does not list, which the registry's check does not let in): they count
    # in their state and in no municipality's row.
    unplaced: dict[str, int] = {}
    for (key, municipality), n in f.enrolled.items():
        enrolled[key] = enrolled.get(key, 0) + n
        if key is not None and municipality not in known.get(key, ()):
            unplaced[key] = unplaced.get(key, 0) + n

    def figures(key: str, name: str, people: int, n: int, scope: str | None) -> StateProgress:
        gone = _state_total(f.lapsed, scope)
        return StateProgress(
            key=key, name=name, population=people, enrolled=n,
            coverage_pct=coverage_pct(n, people),
            enrolled_without_municipality=_state_total(unplaced, scope),
            appointments=_appointments(_for_state(f.appointments, scope), gone),
            cards=_cards(_for_state(f.cards, scope), _state_total(f.overdue, scope)),
        )  # fmt: skip

    national_people = sum(s.population for s in states.values())
    national = figures(NATIONAL_KEY, NATIONAL_NAME, national_people, sum(enrolled.values()), None)
    rows = [
        figures(s.key, s.name, s.population, enrolled.get(s.key, 0), s.key) for s in states.values()
    ]
    municipalities = None
    if state is not None:
        by_municipality = {m: n for (s, m), n in f.enrolled.items() if s == state}
        municipalities = [
            AreaProgress(
                key=m.key,
                name=m.name,
                population=m.population,
                enrolled=by_municipality.get(m.key, 0),
                coverage_pct=coverage_pct(by_municipality.get(m.key, 0), m.population),
            )
            for m in states[state].municipalities
        ]
    return ProgressRead(
        as_of=f.day, computed_at=f.computed_at, population_source=POPULATION_SOURCE,
        national=national, enrolled_without_address=enrolled.get(None, 0), states=rows,
        state=state, municipalities=municipalities,
    )  # fmt: skip


async def _throughput(
    session: AsyncSession, f: Figures, days: int, state: str | None
) -> ThroughputRead:
    end = f.day
    start = end - timedelta(days=days - 1)
    span = [start + timedelta(days=i) for i in range(days)]
    counts = {key: n for key, n in f.completed.items() if start <= key[1] <= end}
    active = {module_id for module_id, _ in counts}
    modules = []
    for m in await repository.modules(session, state, None):
        if m.status != "open" and m.id not in active:
            continue
        # Built without validation (model_construct): the values are our own counts, and
        # validating 2,900 modules x 90 days took seconds.
        series = [DayCount(d, counts.get((m.id, d), 0)) for d in span]
        modules.append(
            ModuleThroughput.model_construct(
                code=m.code,
                name=m.name,
                state=m.state,
                municipality=m.municipality,
                status=m.status,
                daily_capacity=m.daily_capacity,
                total=sum(d.completed for d in series),
                days=series,
            )
        )
    return ThroughputRead(
        as_of=end, computed_at=f.computed_at, start=start, end=end, days=days, state=state,
        modules=modules,
    )  # fmt: skip


# --- CSV -------------------------------------------------------------------------------------

STATE_COLUMNS = (
    "cve_entidad", "nom_entidad", "poblacion_total", "personas_credencializadas",
    "cobertura_pct", "citas_agendadas", "citas_por_atender", "citas_cumplidas",
    "citas_canceladas", "citas_no_asistidas", "tarjetas_por_imprimir", "tarjetas_impresas",
    "tarjetas_para_entrega", "tarjetas_en_espera", "lotes_atrasados",
    "personas_credencializadas_sin_municipio",
)  # fmt: skip
MUNICIPALITY_COLUMNS = (
    "cve_entidad", "nom_entidad", "cve_municipio", "nom_municipio", "poblacion_total",
    "personas_credencializadas", "cobertura_pct",
)  # fmt: skip
UNPLACED = "Sin municipio en el domicilio"
MODULE_COLUMNS = (
    "cve_modulo", "nom_modulo", "cve_entidad", "cve_municipio", "estado_modulo",
    "capacidad_diaria", "fecha", "registros_concluidos",
)  # fmt: skip


def _cell(value: object) -> str:
    """Text as a spreadsheet will not run it: a cell starting with = + - @ or a control
    character is a formula there (OWASP "CSV injection"), so it gets a leading apostrophe."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _pct(value: float) -> str:
    return f"{value:.6f}"


# A UTF-8 byte-order mark starts every file: without it, Excel on Windows reads a CSV as
# Windows-1252 and garbles every accented name ("MichoacÃ¡n").
BOM = "\ufeff"


def _write(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out)  # RFC 4180: CRLF line ends, quotes where needed
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue()


def _state_row(s: StateProgress) -> list[object]:
    a, c = s.appointments, s.cards
    return [
        s.key, s.name, s.population, s.enrolled, _pct(s.coverage_pct),
        a.booked, a.pending, a.kept, a.cancelled, a.no_show,
        c.to_print, c.printed, c.ready_for_pickup, c.waiting, c.overdue_batches,
        s.enrolled_without_municipality,
    ]  # fmt: skip


def progress_csv(report: ProgressRead) -> str:
    """The national row (key 00) and one row per state; with a state chosen, one row per
    municipality of that state instead, and a last row (no municipality key or population)
    for the enrolled whose address has the state but no municipality, so that the rows add
    up to the state's figure."""
    if report.municipalities is None:
        return _write(STATE_COLUMNS, map(_state_row, (report.national, *report.states)))
    chosen = next(s for s in report.states if s.key == report.state)
    rows = [
        [chosen.key, chosen.name, m.key, m.name, m.population, m.enrolled, _pct(m.coverage_pct)]
        for m in report.municipalities
    ]
    rows.append([chosen.key, chosen.name, "", UNPLACED, "", chosen.enrolled_without_municipality,
                 ""])  # fmt: skip
    return _write(MUNICIPALITY_COLUMNS, rows)


def throughput_csv(report: ThroughputRead) -> str:
    """One row per module and day (long format, ready for a pivot table)."""
    rows = [
        [m.code, m.name, m.state, m.municipality or "", m.status, m.daily_capacity,
         d.day.isoformat(), d.completed]
        for m in report.modules
        for d in m.days
    ]  # fmt: skip
    return _write(MODULE_COLUMNS, rows)
