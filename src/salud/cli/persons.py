"""salud persons: bulk registration."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from salud.cli.common import describe, fail, refuse_overwriting_input
from salud.config import get_settings
from salud.facilities.service import unit_successors
from salud.identity import bulk
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(help="Padrón de personas.", no_args_is_help=True)
err = Console(stderr=True)


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


async def _import(
    path: Path, fmt: str | None, rejects: Path | None, chunk: int, quiet: bool, workers: int | None
) -> bulk.ImportReport:
    engine = create_engine(get_settings().database_url)
    if workers is None:
        # PostgreSQL takes writers in parallel; SQLite has one writer at a time.
        workers = 2 if engine.dialect.name == "postgresql" else 0
    total = _count_lines(path) - (1 if (fmt or path.suffix.lower()) in {"csv", ".csv"} else 0)
    try:
        with Progress(
            TextColumn("[bold]Importando[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=quiet,
        ) as progress:
            task = progress.add_task(path.name, total=max(total, 1))
            out = rejects.open("wb") if rejects else None
            try:
                return await bulk.import_file(
                    session_factory(engine),
                    path,
                    actor=f"importacion:{path.name}"[:100],
                    audit_key=get_settings().audit_key.get_secret_value().encode(),
                    fmt=fmt,
                    chunk_size=chunk,
                    rejects_out=out,
                    progress=lambda n: progress.update(task, completed=n),
                    workers=workers,
                    units=unit_successors,
                )
            finally:
                if out:
                    out.close()
    finally:
        await engine.dispose()


@app.command("import")
def import_(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Archivo CSV o NDJSON"),
    fmt: str | None = typer.Option(
        None, "--format", help="csv o ndjson (por defecto, la extensión)"
    ),
    rejects: Path | None = typer.Option(
        None, help="Archivo CSV de rechazos (línea, CURP, motivo); por defecto ARCHIVO.rechazos.csv"
    ),
    chunk: int = typer.Option(5000, min=100, max=100_000, help="Filas por transacción"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Sin barra de progreso"),
    workers: int | None = typer.Option(
        None, min=0, max=16, help="Procesos que validan y escriben (por defecto 2 en PostgreSQL)"
    ),
) -> None:
    """Registra personas desde un archivo. Repetir la importación no duplica nada."""
    rejects = rejects or path.with_name(path.name + ".rechazos.csv")
    refuse_overwriting_input(rejects, [path], "--rejects")
    existed = rejects.exists()
    try:
        report = asyncio.run(_import(path, fmt, rejects, chunk, quiet, workers))
    except Exception as exc:
        # No empty rejects file left behind by a failed import; one with the rejects of the
        # chunks it committed stays.
        if not existed and rejects.exists() and rejects.read_bytes().count(b"\n") <= 1:
            rejects.unlink()  # (its header line at most)
        if isinstance(exc, UnicodeDecodeError | csv.Error):  # say which file
            fail(f"{path}: {describe(exc)}")
        raise
    err.print(
        f"Leídas {report.read:,} · [green]nuevas {report.inserted:,}[/] · "
        f"ya registradas {report.already_present:,} · [red]rechazadas {report.rejected:,}[/]"
    )
    if report.rejected:
        err.print(f"Rechazos con línea y motivo en {rejects}")
        for r in report.rejects[:5]:
            err.print(f"  línea {r.line}: {r.reason}")
    elif rejects.exists():
        rejects.unlink()
