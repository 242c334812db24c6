"""salud synth: synthetic (invented) people in the registry's NDJSON import format."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from salud.config import get_settings
from salud.identity.synth import generate_persons, write_ndjson

app = typer.Typer(
    help="Datos sintéticos: personas ficticias para desarrollo, demostraciones y pruebas.",
    no_args_is_help=True,
)
err = Console(stderr=True)

_PROGRESS_STEP = 5_000


@app.callback()
def _group() -> None:
    """Datos sintéticos: personas ficticias para desarrollo, demostraciones y pruebas."""


def _counted(persons: Iterator[dict[str, Any]], advance: Any) -> Iterator[dict[str, Any]]:
    pending = 0
    for person in persons:
        yield person
        pending += 1
        if pending == _PROGRESS_STEP:
            advance(pending)
            pending = 0
    if pending:
        advance(pending)


@app.command()
def persons(
    count: int = typer.Option(..., "--count", "-n", min=0, help="Cuántas personas generar"),
    seed: int = typer.Option(0, "--seed", "-s", help="Semilla: la misma da el mismo archivo"),
    out: Path | None = typer.Option(
        None, "--out", "-o", dir_okay=False, help="Archivo NDJSON de salida (por defecto, stdout)"
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        file_okay=False,
        help="Carpeta de datos compartidos (INEGI, DGIS); por defecto SALUD_SHARED_DATA_DIR",
    ),
) -> None:
    """Genera personas ficticias (NDJSON, una por línea) con CURP válida y única."""
    folder = data_dir or get_settings().shared_data_dir
    try:
        people = generate_persons(count, seed, folder)
    except RuntimeError as exc:
        err.print(f"[red]Error:[/] {exc}")
        raise typer.Exit(1) from None

    if out is None:  # stdout carries only the data: no progress, no messages
        stdout = sys.stdout.buffer
        try:
            write_ndjson(people, stdout)
            stdout.flush()
        except BrokenPipeError:  # e.g. piped into `head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(1) from None
        return

    with (
        Progress(
            TextColumn("[bold]Generando[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as progress,
        out.open("wb") as fh,
    ):
        task = progress.add_task(out.name, total=max(count, 1))
        written = write_ndjson(
            _counted(people, lambda n: progress.advance(task, n)),
            fh,
        )
    err.print(f"[green]{written:,} personas[/] en {out} (semilla {seed})")
