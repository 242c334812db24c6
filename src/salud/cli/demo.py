"""salud demo: load the demonstration data (development only)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from sqlalchemy import func, select

from salud.cli.accounts import create_demo_accounts, print_demo_accounts
from salud.config import get_settings
from salud.facilities import service as facilities_service
from salud.facilities.models import HealthUnit
from salud.identity import bulk, synth
from salud.identity.models import Person
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(help="Datos de demostración (solo desarrollo).", no_args_is_help=True)
err = Console(stderr=True)


async def _load(persons: int, seed: int) -> None:
    settings = get_settings()
    if settings.environment == "production":
        err.print("[red]Los datos de demostración no se cargan en producción.[/]")
        raise typer.Exit(2)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    data_dir = settings.shared_data_dir
    try:
        async with sessions() as session:
            units = (
                await session.execute(select(func.count()).select_from(HealthUnit))
            ).scalar_one()
            people = (await session.execute(select(func.count()).select_from(Person))).scalar_one()
        if units:
            err.print(f"Catálogo CLUES ya cargado ({units:,} unidades).")
        elif (data_dir / "clues").is_dir():
            err.print(f"Cargando el catálogo CLUES real desde {data_dir / 'clues'} …")
            report = await facilities_service.import_shared_catalog(sessions, data_dir)
            err.print(f"  {report}")
        else:
            err.print(
                "[yellow]No hay catálogos en "
                f"{data_dir}.[/] Importe el archivo oficial de la DGIS con:\n"
                "  salud facilities import ESTABLECIMIENTO_SALUD_AAAAMM.xlsx"
            )
        print_demo_accounts(await create_demo_accounts())
        if people:
            err.print(f"Padrón ya cargado ({people:,} personas).")
            return
        err.print(f"Generando {persons:,} personas sintéticas (semilla {seed}) …")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo-persons.ndjson"
            with path.open("wb") as out:
                synth.write_ndjson(synth.generate_persons(persons, seed, data_dir), out)
            result = await bulk.import_file(sessions, path, actor="demo")
        err.print(f"  {result.inserted:,} personas registradas, {result.rejected} rechazadas")
    finally:
        await engine.dispose()


@app.command()
def load(
    persons: int = typer.Option(3000, min=0, help="Personas sintéticas"),
    seed: int = typer.Option(2026, help="Semilla"),
) -> None:
    """Carga el catálogo CLUES real (si está en ../shared/data) y personas sintéticas."""
    asyncio.run(_load(persons, seed))
