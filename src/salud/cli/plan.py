"""salud plan: project the enrollment drive (days per state, queues) and compare calendars."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from salud.config import get_settings
from salud.enrollment import booking
from salud.enrollment.booking import LiveSetup
from salud.enrollment.calendar import Calendar, Phase
from salud.enrollment.planner import (
    AreaResult,
    ComparedArea,
    Flag,
    Projection,
    by_state,
    compare,
    project,
    queue_periods,
)
from salud.enrollment.planner_inputs import (
    CALENDAR_DAYS,
    EXAMPLE_CALENDARS,
    Assumptions,
    PlannedModule,
    PopulationTable,
    load_calendar_plan,
    national_phase,
    pilot_phases,
    read_modules_csv,
    read_population,
    synthetic_modules,
)
from salud.kit.clock import today_mx
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(
    help="Planeación de la credencialización: días por entidad, colas y calendarios.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

FLAG_LABELS = {
    Flag.QUEUE: "cola",
    Flag.UNFINISHED: "no termina",
    Flag.NO_CAPACITY: "sin módulos",
    Flag.LATE: "tardíos",
    Flag.NOT_CALLED: "sin fecha",
}
_PHASES = ("nacional", "piloto")


@app.callback()
def _group() -> None:
    """Planeación de la credencialización: días por entidad, colas y calendarios."""


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]Error:[/] {message}")
    return typer.Exit(2)


def _start(text: str | None) -> date:
    if text is None:
        return today_mx()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _fail(f"--start: «{text}» no es una fecha AAAA-MM-DD") from None


def _live(from_db: bool) -> LiveSetup | None:
    """The modules, calendars and phases stored in the system (`--from-db`)."""
    if not from_db:
        return None

    async def read() -> LiveSetup:
        engine = create_engine(get_settings().database_url)
        try:
            async with session_factory(engine)() as session:
                return await booking.live_setup(session)
        finally:
            await engine.dispose()

    setup = asyncio.run(read())
    if not setup.modules:
        raise _fail("--from-db: no hay módulos (abiertos o planeados) en el sistema")
    return setup


def _municipal(modules: Sequence[PlannedModule], option: str) -> None:
    """With --by-municipality every module must say which municipality it serves."""
    without = [m for m in modules if len(m.area) == 2]
    if without:
        example = without[0].name or without[0].area
        raise _fail(
            f"--by-municipality: {len(without)} módulos de {option} no tienen municipio "
            f"(p. ej. {example}); sin él no se sabe a quién atienden. Planee por entidad "
            "(sin --by-municipality) o indique el municipio de cada módulo"
        )


def _calendar(
    spec: str, start: date, option: str, live: LiveSetup | None = None
) -> tuple[Calendar, list[Phase] | None]:
    """A calendar stored in the system (with `--from-db`), an example's name, or a JSON file
    (phases only when the file has them)."""
    if live is not None and spec in live.calendars:
        return live.calendars[spec], None
    if spec in EXAMPLE_CALENDARS:
        return EXAMPLE_CALENDARS[spec](start), None
    path = Path(spec)
    if not path.is_file():
        names = ", ".join(EXAMPLE_CALENDARS)
        raise _fail(f"{option}: «{spec}» no es un archivo ni un ejemplo ({names})")
    try:
        return load_calendar_plan(path)
    except ValueError as exc:
        raise _fail(f"{option}: {exc}") from None


def _phases(spec: str | None, start: date, population: PopulationTable) -> list[Phase] | None:
    if spec is None:
        return None
    if spec == "nacional":
        return national_phase(start)
    if spec == "piloto":
        return pilot_phases(start, population.counts)
    path = Path(spec)
    if not path.is_file():
        raise _fail(f"--phases: «{spec}» no es un archivo ni {' ni '.join(_PHASES)}")
    try:
        items = orjson.loads(path.read_bytes())
        return [Phase.model_validate(item) for item in items]
    except (ValueError, TypeError) as exc:
        raise _fail(f"--phases: {path.name}: {exc}") from None


def _number(value: float) -> str:
    return f"{round(value):,}"


def _date(value: date | None) -> str:
    return value.isoformat() if value else "—"


def _flags(result: AreaResult) -> str:
    return ", ".join(FLAG_LABELS[f] for f in Flag if f in result.flags)


def _queue_days(result: AreaResult) -> str:
    return f"{result.peak_queue_days:.1f}" if result.daily_capacity else "—"


def _kind(p: Projection) -> str:
    return "entidades" if len(p.areas[0]) == 2 else "municipios"


def _show_projection(p: Projection, alert_days: float, limit: int) -> None:
    table = Table(
        title=f"Proyección por {_kind(p)}: {p.calendar} (desde {p.start}, {p.horizon} días)"
    )
    for column in ("Clave", "Nombre", "Población", "Termina", "Días", "Cola máx.", "Fecha"):
        table.add_column(column, justify="right" if column in ("Población", "Días") else "left")
    for column in ("Cola (días)", "Uso", "Alertas"):
        table.add_column(column)
    shown = sorted(p.results, key=lambda r: (-(r.days_to_finish or 10**6), -r.peak_queue_days))
    for r in shown[:limit]:
        table.add_row(
            r.area, r.name, _number(r.population), _date(r.finish_day),
            str(r.days_to_finish) if r.finished else f">{p.horizon}",
            _number(r.peak_queue), _date(r.peak_day), _queue_days(r),
            f"{r.utilisation:.0%}", _flags(r),
        )  # fmt: skip
    out.print(table)
    if len(shown) > limit:
        out.print(f"({len(shown) - limit} {_kind(p)} más en el CSV; --limit para ver más)")
    _summary(p, alert_days)


def _summary(p: Projection, alert_days: float) -> None:
    unfinished = [r for r in p.results if not r.finished]
    if unfinished:
        names = ", ".join(r.name for r in unfinished[:5])
        out.print(f"[red]{len(unfinished)} {_kind(p)} no terminan en {p.horizon} días[/]: {names}")
    elif p.last_finish:
        last = [r for r in p.results if r.finish_day == p.last_finish]
        names = ", ".join(r.name for r in last[:5])
        more = f" y {len(last) - 5} más" if len(last) > 5 else ""
        days = last[0].days_to_finish
        out.print(f"Terminan al último, el {p.last_finish} ({days} días): {names}{more}.")
    periods = queue_periods(p)
    if not periods:
        out.print(f"Sin colas de más de {alert_days:g} días de capacidad.")
    for period in periods:
        worst = p.result(period.worst_area)
        out.print(
            f"Colas de más de {alert_days:g} días de capacidad del {period.first_day} al "
            f"{period.last_day} en {len(period.areas)} {_kind(p)}; la mayor, {worst.name}: "
            f"{period.worst_queue_days:.1f} días."
        )
    late = sum(r.late for r in p.results)
    uncalled = sum(r.not_called for r in p.results)
    if late >= 1:
        out.print(
            f"{_number(late)} personas llegan después de su ventana (su entidad abrió tarde)."
        )
    if uncalled >= 1:
        out.print(
            f"{_number(uncalled)} personas no tienen fecha en el calendario dentro del horizonte."
        )


def _days(r: AreaResult) -> str:
    return str(r.days_to_finish) if r.days_to_finish is not None else "—"


def _show_comparison(rows: Sequence[ComparedArea], first: Projection, second: Projection) -> None:
    table = Table(
        title=f"Comparación por {_kind(first)}: «{first.calendar}» (A) y «{second.calendar}» (B)"
    )
    for column in ("Clave", "Nombre", "Días A", "Días B", "Δ días"):
        table.add_column(column, justify="left" if column in ("Clave", "Nombre") else "right")
    for column in ("Cola máx. A", "Cola máx. B", "Δ cola", "Cola días A", "Cola días B"):
        table.add_column(column, justify="right")
    for row in rows:
        diff = row.days_difference
        table.add_row(
            row.area, row.name, _days(row.first), _days(row.second),
            "—" if diff is None else f"{diff:+d}", _number(row.first.peak_queue),
            _number(row.second.peak_queue), f"{round(row.peak_queue_difference):+,}",
            _queue_days(row.first), _queue_days(row.second),
        )  # fmt: skip
    out.print(table)
    for p, label in ((first, "A"), (second, "B")):
        finish = p.last_finish
        out.print(
            f"{label}, {p.calendar}: "
            + (f"todo termina el {finish}" if finish else "no todo termina")
        )


_FIELDS = (
    "nivel", "clave", "nombre", "poblacion", "abre", "termina", "dias", "cola_maxima",
    "fecha_cola_maxima", "cola_dias_capacidad", "capacidad_diaria", "uso", "atendidas",
    "en_espera_al_final", "sin_llegar_al_final", "tardios", "sin_fecha", "alertas",
)  # fmt: skip


_LEVELS = {2: "entidad", 5: "municipio"}


def _row(r: AreaResult) -> list[object]:
    return [
        _LEVELS[len(r.area)], r.area, r.name, r.population, _date(r.opens_on), _date(r.finish_day),
        r.days_to_finish if r.days_to_finish is not None else "", round(r.peak_queue),
        _date(r.peak_day), round(r.peak_queue_days, 2) if r.daily_capacity else "",
        round(r.daily_capacity), round(r.utilisation, 4), round(r.served), round(r.waiting),
        round(r.not_arrived), round(r.late), round(r.not_called),
        " ".join(f.value for f in Flag if f in r.flags),
    ]  # fmt: skip


def _write_csv(path: Path, runs: Sequence[tuple[Projection, Projection | None]]) -> None:
    """Every area of each run (the municipalities, then their states, with
    --by-municipality); the column `nivel` says which."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        if runs[0][1] is None:
            writer.writerow(_FIELDS)
        else:
            writer.writerow(
                [*_FIELDS[:3], *(f"{f}_a" for f in _FIELDS[3:]),
                 *(f"{f}_b" for f in _FIELDS[3:]), "dif_dias", "dif_cola_maxima"]
            )  # fmt: skip
        for first, second in runs:
            if second is None:
                writer.writerows(_row(r) for r in first.results)
                continue
            for row in compare(first, second):
                diff = row.days_difference
                writer.writerow(
                    [*_row(row.first), *_row(row.second)[3:], "" if diff is None else diff,
                     round(row.peak_queue_difference)]
                )  # fmt: skip


@app.command()
def run(
    calendar: str | None = typer.Option(
        None,
        "--calendar",
        help="Archivo JSON del calendario, un ejemplo ("
        + ", ".join(EXAMPLE_CALENDARS)
        + ") o, con --from-db, un calendario guardado; por omisión, el vigente con --from-db "
        "y mayores-primero sin él",
    ),
    from_db: bool = typer.Option(
        False,
        "--from-db",
        help="Módulos (no cerrados), calendarios y fases tal como están en el sistema",
    ),
    other: str | None = typer.Option(None, "--compare", help="Segundo calendario a comparar"),
    phases: str | None = typer.Option(
        None,
        help="Fases: nacional (todas las entidades desde el inicio), piloto o un archivo "
        "JSON; por omisión, con --from-db las guardadas (sin ellas, error) y sin él las del "
        "calendario o nacional",
    ),
    modules: Path | None = typer.Option(
        None, help="CSV de módulos (clave,capacidad,dias[,nombre]); por omisión, módulos sintéticos"
    ),
    module_count: int = typer.Option(2900, min=1, help="Módulos sintéticos en el país"),
    capacity: int = typer.Option(120, min=1, help="Personas por día de cada módulo sintético"),
    weekdays: str = typer.Option("123456", help="Días ISO de los módulos sintéticos"),
    start: str | None = typer.Option(None, help="Primer día (AAAA-MM-DD); por omisión, hoy"),
    horizon: int = typer.Option(730, min=1, max=3660, help="Días a proyectar"),
    alert_days: float = typer.Option(
        5.0, min=0.1, help="Alerta: cola de más de N días de capacidad"
    ),
    limit: int = typer.Option(40, min=1, help="Filas a mostrar"),
    csv_out: Path | None = typer.Option(None, "--csv", help="Escribe los resultados en CSV"),
    data_dir: Path | None = typer.Option(None, help="Carpeta INEGI (por omisión, la de catálogos)"),
    by_municipality: bool = typer.Option(
        False,
        "--by-municipality",
        help="Cada municipio solo con sus módulos (por omisión, los módulos de cada entidad "
        "atienden a toda su población); da también las cifras por entidad",
    ),
) -> None:
    """Proyecta cuántos días necesita cada entidad y dónde se forman colas."""
    first_day = _start(start)
    if from_db and modules:
        raise _fail("--from-db y --modules: elija una fuente de módulos")
    live = _live(from_db)
    if calendar is None:
        if live is not None and live.active is None:
            raise _fail("--from-db: no hay un calendario vigente; indique --calendar")
        calendar = live.active if live is not None and live.active else "mayores-primero"
    try:
        module_list: list[PlannedModule] = read_modules_csv(modules) if modules else []
    except (OSError, ValueError) as exc:
        raise _fail(f"--modules: {exc}") from None
    if live is not None:
        module_list = live.modules
    if by_municipality and module_list:
        _municipal(module_list, "--from-db" if live is not None else "--modules")
    try:
        population = read_population(
            data_dir or get_settings().shared_data_dir / "inegi", by_municipality=by_municipality
        )
        if not module_list:
            module_list = synthetic_modules(population.counts, module_count, capacity, weekdays)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    state_names = read_population(data_dir or get_settings().shared_data_dir / "inegi").names
    assumptions = Assumptions(queue_alert_days=alert_days)
    forced = _phases(phases, first_day, population)
    if forced is None and live is not None and live.phases:
        forced = live.phases

    def one(spec: str, option: str) -> Projection:
        cal, own = _calendar(spec, first_day, option, live)
        chosen = forced or own
        if chosen is None and live is not None:
            # Booking lets nobody book before a phase opens their state: the plan does not
            # assume one the system does not have.
            raise _fail(
                "--from-db: no hay fases guardadas, así que nadie puede agendar todavía; "
                "indique --phases (nacional: todas las entidades abiertas desde --start; "
                "piloto; o un archivo JSON)"
            )
        try:
            return project(
                module_list, cal, chosen or national_phase(first_day), population.counts,
                first_day, horizon, assumptions, population.names,
            )  # fmt: skip
        except ValueError as exc:
            raise _fail(str(exc)) from None

    first = one(calendar, "--calendar")
    second = one(other, "--compare") if other else None
    out.print(
        f"{len(module_list):,} módulos, {sum(m.capacity for m in module_list):,} personas por día "
        f"como máximo; población {population.total:,} (INEGI 2020)."
    )
    out.print(
        "Por municipio: cada municipio solo con los módulos que tiene."
        if by_municipality
        else "Por entidad: los módulos de cada entidad atienden a toda su población "
        "(se agenda en cualquier módulo abierto)."
    )
    runs: list[tuple[Projection, Projection | None]] = [(first, second)]
    if by_municipality:  # the states too: what issue 6 asks is how long each state needs
        runs.append((
            by_state(first, state_names, assumptions),
            by_state(second, state_names, assumptions) if second else None,
        ))  # fmt: skip
    for a, b in runs:
        if b is None:
            _show_projection(a, alert_days, limit)
        else:
            _show_comparison(compare(a, b)[:limit], a, b)
    if csv_out:
        _write_csv(csv_out, runs)
        err.print(f"[green]Resultados en {csv_out}[/]")


@app.command()
def examples(
    out_dir: Path = typer.Option(..., "--out", help="Carpeta donde escribir los ejemplos"),
    start: str | None = typer.Option(None, help="Primer día (AAAA-MM-DD); por omisión, hoy"),
) -> None:
    """Escribe los calendarios de ejemplo en JSON, para copiarlos y ajustarlos."""
    first_day = _start(start)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, build in EXAMPLE_CALENDARS.items():
        path = out_dir / f"{name}.json"
        path.write_bytes(
            orjson.dumps(build(first_day).model_dump(mode="json"), option=orjson.OPT_INDENT_2)
        )
        last = first_day + timedelta(days=CALENDAR_DAYS - 1)
        out.print(f"{path}: del {first_day} al {last}")
