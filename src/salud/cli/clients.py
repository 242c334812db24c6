"""salud clients: institutions' systems that call the API (OAuth2 client credentials)."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from salud.access import clients, revocation
from salud.cli.common import administer, check_institution, fail, operator
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
                new = await clients.register(session, name, scope, institution, clues)
                revocation.record_admin(
                    session, operator(f"alta: {name[:200]}, {' '.join(sorted(new.scopes))}"[:300]),
                    "access:client:create", "client", new.client_id,
                )  # fmt: skip
                return new
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


_REASON = typer.Option(..., "--reason", help="Por qué (queda en la bitácora de auditoría)")


@app.command("list")
def list_clients() -> None:
    """Los sistemas registrados, separados por tabuladores: client_id, nombre, institución,
    unidad, scopes y estado."""

    async def run() -> list[tuple[str, ...]]:
        engine = create_engine(get_settings().database_url)
        try:
            async with session_factory(engine)() as session:
                return [
                    (c.client_id, c.name, str(c.institution_code or "—"), c.clues or "—",
                     c.scopes, "activo" if c.active else "desactivado")
                    for c in await revocation.all_clients(session)
                ]  # fmt: skip
        finally:
            await engine.dispose()

    # Tab-separated on stdout, whole values (a table would cut client ids): for scripts too.
    print("\t".join(("client_id", "nombre", "institución", "CLUES", "scopes", "estado")))
    for row in asyncio.run(run()):
        print("\t".join(row))


@app.command()
def disable(client_id: str, reason: str = _REASON) -> None:
    """Desactiva un sistema (secreto filtrado, convenio terminado): sus tokens dejan de valer
    en segundos y no obtiene otros."""
    administer(reason, lambda s, who: revocation.set_client_active(s, client_id, False, who))
    err.print(f"[green]Sistema {client_id} desactivado.[/]")


@app.command()
def enable(client_id: str, reason: str = _REASON) -> None:
    """Vuelve a activar un sistema desactivado."""
    administer(reason, lambda s, who: revocation.set_client_active(s, client_id, True, who))
    err.print(f"[green]Sistema {client_id} activo.[/]")
