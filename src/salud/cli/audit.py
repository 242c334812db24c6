"""salud audit: check the audit trail's chain and see who accessed a person's data."""

from __future__ import annotations

import asyncio
import getpass
import re
from collections.abc import Sequence

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from salud.access import audit
from salud.access.audit_tx import record_at_commit
from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.config import get_settings
from salud.kit.clock import MEXICO_CITY
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(help="Bitácora de auditoría: integridad y accesos.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

# Only the shape: the log must be searchable by any CURP it holds, even one that would not
# pass today's check digit.
_CURP_SHAPE = re.compile(r"[A-Z0-9]{18}")
_OUTCOMES = {
    "success": "[green]permitido[/]",
    "denied": "[red]denegado[/]",
    "not_found": "no encontrado",
    "error": "[yellow]error[/]",
}


def _events_table(rows: Sequence[AuditEvent], title: str) -> Table:
    table = Table(title=title)
    # Folded, never cut short with an ellipsis: an audit listing must not hide what it holds.
    for column in ("Núm.", "Fecha (CDMX)", "Quién", "Rol", "Inst.", "CLUES", "Acción"):
        table.add_column(column, justify="right" if column == "Núm." else "left", overflow="fold")
    table.add_column("Motivo", overflow="fold")
    table.add_column("Resultado", overflow="fold")
    for e in rows:
        why = " · ".join(p for p in (e.purpose, e.reason) if p)
        table.add_row(
            str(e.seq),
            e.at.astimezone(MEXICO_CITY).strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.role,
            "" if e.institution_code is None else str(e.institution_code),
            e.clues or "",
            e.action,
            why,
            _OUTCOMES.get(e.outcome, e.outcome),
        )
    return table


def _entry_table(e: AuditEvent) -> Table:
    """One entry, every stored field, one per line (what an investigator needs to compare)."""
    table = Table(title=f"Entrada {e.seq} tal como está guardada", show_header=False)
    table.add_column("Campo", style="bold")
    table.add_column("Valor", overflow="fold")
    for name in (*audit.SEALED_FIELDS, "chain"):
        value = getattr(e, name)
        if name == "at":
            value = value.isoformat()
        elif name == "detail" and value is not None:
            value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        table.add_row(name, "—" if value is None else str(value))
    return table


def _anchor(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    seq, _, chain = raw.partition(":")
    if not seq.isdigit() or int(seq) < 1 or not re.fullmatch(r"[0-9a-f]{64}", chain):
        raise typer.BadParameter("use NÚMERO:CADENA (64 hexadecimales)", param_hint="--anchor")
    return int(seq), chain


async def _verify(
    quiet: bool, anchor: tuple[int, str] | None = None
) -> tuple[audit.VerifyResult, AuditEvent | None]:
    settings = get_settings()
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            total = (await session.execute(select(func.max(AuditEvent.seq)))).scalar() or 0
        with Progress(
            TextColumn("Verificando la bitácora"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=quiet,
        ) as progress:
            task = progress.add_task("", total=max(total, 1))
            result = await audit.verify(
                sessions,
                settings.audit_key.get_secret_value().encode(),
                progress=lambda n: progress.update(task, completed=n),
                anchor=anchor,
            )
            progress.update(task, completed=result.checked)
        bad: AuditEvent | None = None
        if result.first_bad_seq is not None:
            try:
                async with sessions() as session:
                    found = await audit.events(
                        session, limit=1, before_seq=result.first_bad_seq + 1
                    )
                bad = found[0] if found and found[0].seq == result.first_bad_seq else None
            except (ValueError, TypeError):  # the entry is unreadable: the problem says so
                bad = None
        return result, bad
    finally:
        await engine.dispose()


@app.command()
def verify(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Sin barra de progreso"),
    anchor: str | None = typer.Option(
        None,
        "--anchor",
        help="NÚMERO:CADENA de una verificación anterior (guardado fuera de la base): detecta "
        "entradas borradas al final",
    ),
) -> None:
    """Comprueba la cadena de la bitácora: ninguna entrada editada, borrada ni movida.

    Sale con 0 si está íntegra y con 1 si fue alterada (nombra la primera entrada dañada).
    Imprime el ancla de esta verificación (la última entrada): guárdela fuera de la base y
    pásela con --anchor la próxima vez, para que un recorte al final no pase inadvertido."""
    result, bad = asyncio.run(_verify(quiet, _anchor(anchor)))
    if result.ok:
        out.print(f"[green]Bitácora íntegra:[/] {result.checked:,} entradas verificadas.")
        if result.last_chain is not None:
            out.print(f"Ancla: {result.checked}:{result.last_chain}", soft_wrap=True)
        return
    out.print(f"[bold red]Bitácora alterada:[/] {result.problem}.")
    out.print(
        f"Primera entrada dañada: {result.first_bad_seq}; "
        f"las {result.checked:,} anteriores están íntegras."
    )
    if bad is not None:
        out.print(_entry_table(bad))
    raise typer.Exit(1)


async def _show(curp: str, limit: int, before: int | None) -> Sequence[AuditEvent]:
    """The person's entries, and this read of them as an entry of their own log (who ran it,
    `cli:<user>`, as every command that touches someone's data is recorded), in one
    transaction: nothing is shown unless the entry is written."""
    settings = get_settings()
    engine = create_engine(settings.database_url)
    read = audit.AuditEntry(
        actor=f"cli:{getpass.getuser()}"[:100], role=Role.SYSTEM_ADMIN.value,
        action="access:person-log:read", subject_type="person", person_curp=curp,
        purpose="administracion", detail={"limit": limit, "before": before},
    )  # fmt: skip
    try:
        async with session_factory(engine)() as session, session.begin():
            rows = await audit.events_for_person(session, curp, limit=limit, before_seq=before)
            record_at_commit(session, settings.audit_key.get_secret_value().encode(), [read])
            return rows
    finally:
        await engine.dispose()


@app.command()
def show(
    curp: str = typer.Option(..., "--curp", help="CURP de la persona"),
    limit: int = typer.Option(50, min=1, max=1000, help="Cuántas entradas (las más recientes)"),
    before: int | None = typer.Option(
        None, "--before", min=1, help="Solo entradas anteriores a este número (paginar)"
    ),
) -> None:
    """Muestra quién consultó o modificó los datos de una persona, de lo reciente a lo antiguo."""
    curp = curp.strip().upper()
    if not _CURP_SHAPE.fullmatch(curp):
        err.print("[red]Error:[/] --curp: debe tener 18 letras y dígitos")
        raise typer.Exit(2)
    rows = asyncio.run(_show(curp, limit, before))
    if not rows:
        out.print(f"No hay accesos registrados a los datos de {curp}.")
        return
    out.print(_events_table(rows, f"Accesos a los datos de {curp}"))
    if len(rows) == limit:
        out.print(f"Hay más: repita con --before {rows[-1].seq}")
