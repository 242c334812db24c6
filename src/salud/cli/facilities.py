"""salud facilities: import the CLUES catalog and look up the nearest units."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.cli.common import refuse_overwriting_input
from salud.config import get_settings
from salud.errors import DomainError
from salud.facilities import service
from salud.facilities.catalog_import import SHARED_FILES
from salud.facilities.nearest import IndexCache
from salud.facilities.schemas import NearestResults
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(help="Unidades de salud (catálogo CLUES).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")
_SHOWN_REJECTIONS = 10


def _run(work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(get_settings().database_url)
        try:
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        err.print(f"[red]Error:[/] {exc.detail}")
        raise typer.Exit(2) from None


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _tracker(bar: Progress) -> service.Progress:
    tasks: dict[str, TaskID] = {}

    def update(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total)
        bar.update(tasks[what], completed=done, total=total)

    return update


def _print_report(report: service.ImportReport) -> None:
    out.print(str(report))
    for r in report.rejected[:_SHOWN_REJECTIONS]:
        out.print(f"  [yellow]rechazada[/] fila {r.row} {r.clues or '(sin clave)'}: {r.reason}")
    if len(report.rejected) > _SHOWN_REJECTIONS:
        out.print(f"  … y {len(report.rejected) - _SHOWN_REJECTIONS:,} rechazadas más")
    if report.suspicious:
        table = Table(title=f"Coordenadas sospechosas en {report.path.name}")
        for column in ("Fila", "CLUES", "Latitud", "Longitud", "Problema"):
            table.add_column(column)
        for s in report.suspicious:
            table.add_row(str(s.row), s.clues, _fmt(s.latitude), _fmt(s.longitude), s.detail)
        out.print(table)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _write_rejects(path: Path, reports: list[service.ImportReport]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["archivo", "fila", "clues", "motivo"])
        for report in reports:
            for r in report.rejected:
                writer.writerow([report.path.name, r.row, r.clues, r.reason])


@app.command("import")
def import_files(
    paths: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, help="Archivos CLUES (.xlsx o .csv)"
    ),
    rejects: Path | None = typer.Option(None, help="Escribir aquí las filas rechazadas (CSV)"),
    as_of: str | None = typer.Option(
        None, help="Mes de los datos (AAAA-MM) si el nombre del archivo no lo dice"
    ),
) -> None:
    """Importa archivos del catálogo CLUES (el tipo se reconoce por el encabezado)."""
    refuse_overwriting_input(rejects, paths, "--rejects")

    async def work(sessions: async_sessionmaker[AsyncSession]) -> list[service.ImportReport]:
        reports = []
        with _progress_bar() as bar:
            track = _tracker(bar)
            for path in paths:
                reports.append(
                    await service.import_file(sessions, path, progress=track, as_of=as_of)
                )
        return reports

    reports = _run(work)
    for report in reports:
        _print_report(report)
    if rejects is not None:
        _write_rejects(rejects, reports)
        err.print(f"Filas rechazadas escritas en {rejects}")


@app.command("import-shared")
def import_shared(
    data_dir: Path | None = typer.Option(
        None, file_okay=False, help="Carpeta de datos compartidos (por omisión, la configurada)"
    ),
    rejects: Path | None = typer.Option(None, help="Escribir aquí las filas rechazadas (CSV)"),
) -> None:
    """Importa los cinco archivos CLUES de la carpeta de datos compartidos."""
    folder = (data_dir or get_settings().shared_data_dir) / "clues"
    refuse_overwriting_input(rejects, [folder / name for name in SHARED_FILES], "--rejects")

    async def work(sessions: async_sessionmaker[AsyncSession]) -> service.CatalogImportReport:
        with _progress_bar() as bar:
            return await service.import_shared_catalog(sessions, data_dir, _tracker(bar))

    catalog = _run(work)
    for report in catalog.files:
        _print_report(report)
    out.print(f"[bold]{catalog}[/]")
    if rejects is not None:
        _write_rejects(rejects, catalog.files)
        err.print(f"Filas rechazadas escritas en {rejects}")


@app.command()
def nearest(
    lat: float = typer.Option(..., help="Latitud"),
    lng: float = typer.Option(..., help="Longitud"),
    k: int = typer.Option(5, help="Cuántas unidades (1 a 50)"),
    institution: list[str] | None = typer.Option(
        None, help="Clave de institución CLUES (IMB, IMS, IST, SSA...); repetible"
    ),
    max_km: float | None = typer.Option(None, help="Distancia máxima en km"),
    level: int | None = typer.Option(None, help="Nivel de atención (1, 2 o 3)"),
    open_now: bool = typer.Option(False, "--open-now", help="Solo unidades abiertas ahora"),
    include_closed: bool = typer.Option(
        False, "--include-out-of-operation", help="Incluir unidades fuera de operación"
    ),
) -> None:
    """Muestra las unidades de salud más cercanas a un punto."""

    async def work(sessions: async_sessionmaker[AsyncSession]) -> NearestResults:
        query = service.nearest_query(
            lat,
            lng,
            k=k,
            max_km=max_km,
            institutions=institution,
            level=level,
            in_operation=None if include_closed else True,
            open_now=open_now,
        )
        async with sessions() as session:
            return await service.nearest(session, query, IndexCache())

    results = _run(work)
    if not results.items:
        out.print("No se encontraron unidades con esos criterios.")
        return
    table = Table(title=f"Unidades más cercanas a ({lat}, {lng})")
    for column in ("CLUES", "Nombre", "Institución", "Nivel", "km", "Ubicación", "Abierta"):
        table.add_column(column, justify="right" if column == "km" else "left")
    opened = {True: "sí", False: "no", None: "?"}
    for u in results.items:
        table.add_row(
            u.clues,
            u.name,
            u.institution_code,
            str(u.level_of_care or ""),
            f"{u.distance_km:.2f}",
            u.location_precision,
            opened[u.open_now],
        )
    out.print(table)
