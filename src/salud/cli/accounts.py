"""salud accounts: staff and citizen accounts."""

from __future__ import annotations

import asyncio
import getpass
import os

import pyotp
import typer
from rich.console import Console
from rich.table import Table

from salud.access import repository, revocation, service
from salud.access.permissions import Role
from salud.access.schemas import AccountCreate
from salud.cli.common import administer, check_institution, fail, operator
from salud.config import get_settings
from salud.errors import DomainError
from salud.facilities.service import check_clues
from salud.identity.service import check_curp
from salud.kit.sealing import Keyring
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(help="Cuentas de personal y de ciudadanos.", no_args_is_help=True)
err = Console(stderr=True)

# One demo account per role, for development only (make run). Never in production.
DEMO_PASSWORD = "Demo-Salud-2026"  # noqa: S105 - public development credential
DEMO: list[tuple[str, str, Role, int | None, str | None]] = [
    ("operador.demo", "Operadora de módulo (demo)", Role.REGISTRATION_OPERATOR, 10, None),
    ("supervisor.demo", "Supervisor de módulo (demo)", Role.SUPERVISOR, 10, None),
    ("medica.imss.demo", "Médica IMSS (demo)", Role.CLINICIAN, 2, "HGIMS000010"),
    ("recepcion.demo", "Recepción (demo)", Role.VERIFIER, 3, None),
    ("admin.imss.demo", "Administrador IMSS (demo)", Role.INSTITUTION_ADMIN, 2, None),
    ("auditoria.demo", "Auditoría (demo)", Role.AUDITOR, None, None),
    ("sistemas.demo", "Administración del sistema (demo)", Role.SYSTEM_ADMIN, None, None),
]


def _ring() -> Keyring:
    s = get_settings()
    return Keyring.from_config(s.kek_id, s.kek.get_secret_value(), s.old_keks.get_secret_value())


async def _create(data: AccountCreate) -> str | None:
    engine = create_engine(get_settings().database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            _, uri = await service.create_account(session, data, _ring())
            revocation.record_admin(session, operator(f"alta, rol {data.role.value}"),
                                    "access:account:create", "account", data.username)  # fmt: skip
        return uri
    finally:
        await engine.dispose()


@app.command()
def create(
    username: str = typer.Option(..., help="Nombre de usuario (minúsculas, puntos, guiones)"),
    name: str = typer.Option(..., help="Nombre para mostrar"),
    role: Role = typer.Option(..., help="Rol"),
    institution: int | None = typer.Option(None, help="Clave DGIS de la institución"),
    clues: str | None = typer.Option(None, help="CLUES de la unidad"),
    curp: str | None = typer.Option(None, help="Solo ciudadanos: su CURP"),
) -> None:
    """Crea una cuenta. La contraseña se pide sin eco (o SALUD_NEW_PASSWORD)."""
    if role is Role.CLIENT:
        fail("--role client: es el rol de los sistemas; regístrelos con `salud clients create`")
    check_institution(institution)
    if clues is not None:
        clues = check_clues(clues, "--clues")
    if curp is not None:
        curp = check_curp(curp.strip().upper(), "--curp")
    password = os.environ.get("SALUD_NEW_PASSWORD") or getpass.getpass("Contraseña: ")
    try:
        uri = asyncio.run(
            _create(
                AccountCreate(
                    username=username,
                    display_name=name,
                    role=role,
                    password=password,
                    institution_code=institution,
                    clues=clues,
                    curp=curp,
                    totp=role is not Role.CITIZEN,
                )
            )
        )
    except DomainError as exc:
        err.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(2) from None
    err.print(f"[green]Cuenta {username} creada.[/]")
    if uri:
        err.print("Registre este secreto en su aplicación autenticadora (se muestra una vez):")
        print(uri)


async def create_demo_accounts() -> list[tuple[str, Role, str | None]]:
    """The demo accounts (skipping those that exist); returns (username, role, TOTP secret)."""
    engine = create_engine(get_settings().database_url)
    ring = _ring()
    out: list[tuple[str, Role, str | None]] = []
    try:
        async with session_factory(engine)() as session, session.begin():
            for username, name, role, institution, clues in DEMO:
                account = await repository.by_username(session, username)
                if account is None:
                    await service.create_account(
                        session,
                        AccountCreate(
                            username=username,
                            display_name=name,
                            role=role,
                            password=DEMO_PASSWORD,
                            institution_code=institution,
                            clues=clues,
                        ),
                        ring,
                    )
                    account = await repository.by_username(session, username)
                assert account is not None
                out.append((username, role, service.totp_secret(account, ring)))
    finally:
        await engine.dispose()
    return out


def print_demo_accounts(accounts: list[tuple[str, Role, str | None]]) -> None:
    table = Table(title=f"Cuentas de demostración (contraseña: {DEMO_PASSWORD})")
    table.add_column("usuario")
    table.add_column("rol")
    table.add_column("secreto TOTP")
    for username, role, secret in accounts:
        table.add_row(username, role.value, secret or "—")
    err.print(table)
    err.print(
        "Inicie sesión con POST /api/v1/auth/token {username, password, totp}; el código TOTP "
        "actual lo da `salud accounts totp USUARIO` (solo en desarrollo)."
    )


@app.command()
def demo() -> None:
    """Crea (o muestra) una cuenta de demostración por rol. Solo en desarrollo."""
    if get_settings().environment == "production":
        err.print("[red]No hay cuentas de demostración en producción.[/]")
        raise typer.Exit(2)
    print_demo_accounts(asyncio.run(create_demo_accounts()))


@app.command()
def totp(username: str) -> None:
    """El código TOTP actual de una cuenta (solo desarrollo, para probar el inicio de sesión)."""
    if get_settings().environment == "production":
        err.print("[red]No disponible en producción.[/]")
        raise typer.Exit(2)

    async def secret() -> str | None:
        engine = create_engine(get_settings().database_url)
        try:
            async with session_factory(engine)() as session:
                account = await repository.by_username(session, username)
                return service.totp_secret(account, _ring()) if account else None
        finally:
            await engine.dispose()

    found = asyncio.run(secret())
    if not found:
        err.print("[red]La cuenta no existe o no usa TOTP.[/]")
        raise typer.Exit(1)
    print(pyotp.TOTP(found).now())


_REASON = typer.Option(..., "--reason", help="Por qué (queda en la bitácora de auditoría)")


@app.command()
def disable(username: str, reason: str = _REASON) -> None:
    """Desactiva una cuenta (una persona que dejó el puesto, una clave filtrada): no puede
    iniciar sesión y sus tokens dejan de valer en segundos."""
    administer(reason, lambda s, who: revocation.set_account_active(s, username, False, who))
    err.print(f"[green]Cuenta {username} desactivada.[/]")


@app.command()
def enable(username: str, reason: str = _REASON) -> None:
    """Vuelve a activar una cuenta desactivada."""
    administer(reason, lambda s, who: revocation.set_account_active(s, username, True, who))
    err.print(f"[green]Cuenta {username} activa.[/]")


@app.command()
def unlock(username: str, reason: str = _REASON) -> None:
    """Termina un bloqueo por intentos fallidos."""
    administer(reason, lambda s, who: revocation.unlock_account(s, username, who))
    err.print(f"[green]Cuenta {username} desbloqueada.[/]")


@app.command("new-totp")
def new_totp(username: str, reason: str = _REASON) -> None:
    """Un nuevo segundo factor (teléfono perdido): el anterior deja de valer. Muestra el
    secreto una vez."""
    uri = administer(reason, lambda s, who: revocation.new_second_factor(s, username, _ring(), who))
    err.print("Registre este secreto en su aplicación autenticadora (se muestra una vez):")
    print(uri)
