"""salud clients: institutions' systems that call the API (OAuth2 client credentials)."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from salud.access import clients
from salud.cli.common import check_institution, fail
from salud.config import get_settings
from salud.errors import DomainError
from salud.facilities.service import check_clues
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(
    help="Sistemas institucionales (OAuth2 client credentials).", no_args_is_help=True
)
err = Console(stderr=True)


@app.command()
def create(
    name: str = typer.Option(..., help="Nombre del sistema"),
    scope: list[str] = typer.Option(..., help="Scope SMART, p. ej. system/Patient.read; repetible"),
    institution: int | None = typer.Option(None, help="Clave DGIS de la institución"),
    clues: str | None = typer.Option(None, help="CLUES de la unidad"),
) -> None:
    """Registra un sistema y muestra su client_id y su secreto (una sola vez)."""
    # The institution and unit decide what the system may see: no typo passes.
    name = name.strip()
    if not name:
        fail("--name: indique el nombre del sistema")
    check_institution(institution)
    if clues is not None:
        clues = check_clues(clues, "--clues")

    async def run() -> clients.NewClient:
        engine = create_engine(get_settings().database_url)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await clients.register(session, name, scope, institution, clues)
        finally:
            await engine.dispose()

    try:
        new = asyncio.run(run())
    except DomainError as exc:
        err.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(2) from None
    err.print(f"[green]Sistema registrado con scopes {' '.join(sorted(new.scopes))}.[/]")
    err.print("Guarde el secreto ahora: no se vuelve a mostrar.")
    print(f"client_id={new.client_id}")
    print(f"client_secret={new.client_secret}")
