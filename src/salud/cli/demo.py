"""salud demo: load the demonstration data (development only)."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import repository as accounts_repository
from salud.access import service as accounts_service
from salud.access.audit import AuditLog
from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.schemas import AccountCreate
from salud.cli.accounts import DEMO_PASSWORD, create_demo_accounts, print_demo_accounts
from salud.cli.credentials import config_of
from salud.config import Settings, get_settings
from salud.credentials import service as credentials
from salud.credentials import signing
from salud.credentials.models import Credential, SigningKey
from salud.credentials.schemas import IssueReason
from salud.credentials.signing import Signer
from salud.enrollment import booking
from salud.enrollment.calendar import Rule
from salud.enrollment.models import RegistrationModule
from salud.enrollment.schemas import CalendarCreate, ModuleCreate, ModuleStatus, PhaseCreate
from salud.facilities import service as facilities_service
from salud.facilities.models import HealthUnit
from salud.identity import bulk, guardians, photos, synth
from salud.identity.models import Person
from salud.identity.schemas import Relationship
from salud.kit.ages import is_minor
from salud.kit.clock import today_mx
from salud.kit.sealing import Keyring
from salud.storage.engine import create_engine, session_factory

INEGI_KEYS = [f"{n:02d}" for n in range(1, 33)]
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
        await _demo_drive(sessions, settings)
        if people:
            err.print(f"Padrón ya cargado ({people:,} personas).")
            await _demo_credentials(sessions, settings)
            return
        err.print(f"Generando {persons:,} personas sintéticas (semilla {seed}) …")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo-persons.ndjson"
            with path.open("wb") as out:
                synth.write_ndjson(synth.generate_persons(persons, seed, data_dir), out)
            key = settings.audit_key.get_secret_value().encode()
            result = await bulk.import_file(sessions, path, actor="demo", audit_key=key)
        err.print(f"  {result.inserted:,} personas registradas, {result.rejected} rechazadas")
        await _demo_credentials(sessions, settings)
    finally:
        await engine.dispose()


def demo_modules() -> list[ModuleCreate]:
    """The demo's modules (built when used: their check reads INEGI's catalog, which a
    command that does not need it must not require)."""
    return [
        ModuleCreate(code="MR-13-0001", name="Módulo Pachuca Centro (demo)", state="13",
                     municipality="048", address="Plaza Juárez s/n, Centro, Pachuca, Hgo.",
                     latitude=20.1235, longitude=-98.7364, daily_capacity=120,
                     supervisor="supervisor.demo"),
        ModuleCreate(code="MR-09-0001", name="Módulo Cuauhtémoc (demo)", state="09",
                     municipality="015", address="Av. Juárez 50, Centro, Cuauhtémoc, CDMX",
                     latitude=19.4353, longitude=-99.1412, daily_capacity=200,
                     supervisor="supervisor.demo"),
    ]  # fmt: skip


def demo_calendar(start: date) -> CalendarCreate:
    """Older adults first (a week), then by the first surname's letter, then open to all."""
    week = timedelta(days=7)
    return CalendarCreate(
        name="Demostración: personas mayores primero", active=True,
        rules=[
            Rule(starts_on=start, ends_on=start + week - timedelta(days=1), min_age=60,
                 label="60 años o más"),
            Rule(starts_on=start + week, ends_on=start + 3 * week - timedelta(days=1),
                 letters="A-L", label="apellidos A-L"),
            Rule(starts_on=start + 3 * week, ends_on=start + 5 * week - timedelta(days=1),
                 letters="M-Z", label="apellidos M-Z"),
            Rule(starts_on=start + 5 * week, ends_on=start + 40 * week, label="todas las personas"),
        ],
    )  # fmt: skip


async def _demo_drive(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Two open registration modules, a national phase and the active calendar; the demo
    operator and supervisor work at the Pachuca module."""
    async with sessions() as session:
        if await session.scalar(select(func.count()).select_from(RegistrationModule)):
            return
    audit = AuditLog(sessions, settings.audit_key.get_secret_value().encode())
    await audit.start()
    # The ministry sets the phase and the calendar; the supervisor (no module of their own
    # yet) opens the modules.
    ministry = Caller(
        Principal("demo", "ministerio.demo", Role.INSTITUTION_ADMIN, 10), audit, "registro"
    )
    caller = Caller(Principal("demo", "supervisor.demo", Role.SUPERVISOR, 10), audit, "registro")
    today = today_mx()
    try:
        async with sessions() as session, session.begin():
            phase = PhaseCreate(name="Nacional (demo)", starts_on=today, states=INEGI_KEYS)
            await booking.create_phase(session, phase, ministry)
            await booking.create_calendar(session, demo_calendar(today), ministry)
            for module in demo_modules():
                await booking.create_module(session, module, caller)
                await booking.set_module_status(session, module.code, ModuleStatus.OPEN, caller)
            for username in ("operador.demo", "supervisor.demo"):
                await accounts_service.assign_module(session, username, "MR-13-0001")
    finally:
        await audit.close()
    err.print("Módulos de registro de demostración abiertos: MR-13-0001 (Pachuca), MR-09-0001 "
              "(CDMX). Citas: http://127.0.0.1:8000/cita · Módulo: /modulo")  # fmt: skip


DEMO_CARDS = 20
DEMO_CITIZENS = 3


async def _demo_credentials(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """A signing key, photos and cards for the first synthetic persons, and citizen accounts
    for the first three (they sign in at /entrar and see their digital card)."""
    ring = Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )
    async with sessions() as session:
        if await session.scalar(select(func.count()).select_from(Credential)):
            err.print("Credenciales de demostración ya expedidas.")
            return
        keys = await session.scalar(select(func.count()).select_from(SigningKey))
        curps = list(
            await session.scalars(select(Person.curp).order_by(Person.id).limit(DEMO_CARDS))
        )
    if not curps:
        return
    if not keys:
        async with sessions() as session, session.begin():
            await signing.rotate(session, ring, "demo")
    audit = AuditLog(sessions, settings.audit_key.get_secret_value().encode())
    await audit.start()
    caller = Caller(Principal("demo", "supervisor.demo", Role.SUPERVISOR, 10), audit, "registro")
    signer = Signer(sessions, ring)
    try:
        for i, curp in enumerate(curps):
            async with sessions() as session, session.begin():
                await photos.put_photo(session, ring, curp, synth.synthetic_face(i), caller)
                # Demonstration persons stand for people already enrolled at a module.
                await credentials.issue(
                    session, signer, ring, config_of(settings), curp, IssueReason.FIRST, caller,
                    enrolled=True,
                )  # fmt: skip
    finally:
        await audit.close()
    table = Table(title=f"Personas de demostración (contraseña: {DEMO_PASSWORD})")
    table.add_column("usuario")
    table.add_column("CURP")
    async with sessions() as session, session.begin():
        for i, curp in enumerate(curps[:DEMO_CITIZENS], 1):
            username = f"persona{i}.demo"
            if await accounts_repository.by_username(session, username) is None:
                await accounts_service.create_account(
                    session,
                    AccountCreate(username=username, display_name=f"Persona {i} (demo)",
                                  role=Role.CITIZEN, password=DEMO_PASSWORD, curp=curp,
                                  totp=False),
                    ring,
                )  # fmt: skip
            table.add_row(username, curp)
        # A parent among the demo citizens answers for a minor with a card (/credencial/menores).
        people = {
            p.curp: p for p in await session.scalars(select(Person).where(Person.curp.in_(curps)))
        }
        today = today_mx()
        adults = [c for c in curps[:DEMO_CITIZENS] if not is_minor(people[c].birth_date, today)]
        minors = [c for c in curps if is_minor(people[c].birth_date, today)]
        family = (adults[0], minors[0]) if adults and minors else None
        if family:
            parent = people[family[0]]
            relation = Relationship.MOTHER if parent.sex == "M" else Relationship.FATHER
            await guardians.link(session, family[1], family[0], relation, "demostración", caller)
    err.print(f"  {len(curps)} credenciales expedidas con fotografía sintética.")
    err.print(table)
    if family:
        who = f"persona{curps.index(family[0]) + 1}.demo"
        err.print(f"{who} responde por la menor o el menor {family[1]}: /credencial/menores")
    err.print("Credencial digital: http://127.0.0.1:8000/credencial/ · Verificador: /verificar")


@app.command()
def load(
    persons: int = typer.Option(3000, min=0, help="Personas sintéticas"),
    seed: int = typer.Option(2026, help="Semilla"),
) -> None:
    """Carga el catálogo CLUES real (si está en ../shared/data) y personas sintéticas."""
    asyncio.run(_load(persons, seed))
