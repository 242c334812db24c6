"""salud records: the health record's bulk work (NDJSON import, the official FHIR examples)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditLog
from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.config import get_settings
from salud.errors import DomainError
from salud.facilities.service import check_clues
from salud.identity.catalogs import affiliation_catalog
from salud.records import bulk, examples, service
from salud.records.outcome import FhirError
from salud.storage.engine import create_engine, session_factory
from salud.storage.fastread import FastReader

app = typer.Typer(help="Expediente clínico (FHIR): carga masiva.", no_args_is_help=True)
err = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class _Env:
    sessions: async_sessionmaker[AsyncSession]
    reader: FastReader
    audit: AuditLog


@asynccontextmanager
async def _environment() -> AsyncIterator[_Env]:
    settings = get_settings()
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    reader = FastReader(engine)
    await reader.start()
    audit = AuditLog(sessions, settings.audit_key.get_secret_value().encode())
    await audit.start()
    try:
        yield _Env(sessions, reader, audit)
    finally:
        await audit.close()
        await reader.close()
        await engine.dispose()


def _caller(name: str, audit: AuditLog, institution: int | None, clues: str | None) -> Caller:
    """The importer as a machine principal (what the audit log names as the writer)."""
    principal = Principal(
        f"cli:{name}"[:100], bulk.importer_name(name), Role.CLIENT, institution, clues,
        scopes=frozenset({"system/*.read", "system/*.write"}),
    )  # fmt: skip
    return Caller(principal, audit, purpose="importacion")


def sibling(path: Path, suffix: str) -> Path:
    """FILE.ndjson -> FILE<suffix> (any other name: NAME<suffix>)."""
    stem = path.name[: -len(".ndjson")] if path.name.endswith(".ndjson") else path.name
    return path.with_name(stem + suffix)


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


async def _import(
    path: Path, lenient: bool, chunk: int, institution: int | None, clues: str | None,
    quiet: bool, workers: int | None,
) -> bulk.ImportReport:  # fmt: skip
    total = _count_lines(path)
    if workers is None:  # starting a process costs ~2 s; SQLite has one writer anyway
        url = get_settings().database_url
        workers = 2 if url.startswith("postgresql") and total > 20_000 else 0
    async with _environment() as env:
        caller = _caller(path.name, env.audit, institution, clues)
        with (
            Progress(
                TextColumn("[bold]Importando[/] {task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeRemainingColumn(), console=err, disable=quiet,
            ) as progress,
            sibling(path, bulk.REJECTS_SUFFIX).open("wb") as rejects,
            sibling(path, bulk.DANGLING_SUFFIX).open("wb") as dangling,
        ):  # fmt: skip
            task = progress.add_task(path.name, total=max(total, 1))
            return await bulk.import_lines(
                env.sessions, caller, bulk.ndjson_lines(path), source=path.name,
                lenient=lenient, chunk_size=chunk, rejects_out=rejects, dangling_out=dangling,
                progress=lambda n: progress.update(task, completed=n), workers=workers,
            )  # fmt: skip


@app.command("import")
def import_(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Archivo NDJSON"),
    lenient: bool = typer.Option(
        False,
        "--lenient",
        help="Guardar también los recursos con referencias a nada y anotarlas en "
        "ARCHIVO.sin-destino.ndjson (por omisión se rechazan, como en la API)",
    ),
    chunk: int = typer.Option(5000, min=1, max=100_000, help="Recursos por transacción"),
    institution: int | None = typer.Option(
        None, help="Institución que escribe (código DGIS), en meta.tag de cada recurso"
    ),
    clues: str | None = typer.Option(None, help="Unidad que escribe (CLUES), en meta.source"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Sin barra de progreso"),
    workers: int | None = typer.Option(
        None,
        min=0,
        max=16,
        help="Procesos que revisan las líneas (por omisión 2 en PostgreSQL si son más de 20 000)",
    ),
) -> None:
    """Importa recursos FHIR (uno por línea). Repetirla no duplica los que traen id (salvo un
    id repetido en el mismo archivo: cada línea es una versión) ni revive los borrados."""
    # Who wrote the resources decides who sees what a person restricted: no typo passes.
    if institution is not None and institution not in affiliation_catalog():
        err.print(f"[red]--institution {institution}: no es un código DGIS de institución[/]")
        raise typer.Exit(2)
    if clues is not None:
        try:
            clues = check_clues(clues, "--clues")
        except DomainError as exc:
            err.print(f"[red]{exc.problems[0].field}: {exc.problems[0].reason}[/]")
            raise typer.Exit(2) from None
    rejects, dangling = sibling(path, bulk.REJECTS_SUFFIX), sibling(path, bulk.DANGLING_SUFFIX)
    try:
        report = asyncio.run(_import(path, lenient, chunk, institution, clues, quiet, workers))
    except FhirError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    err.print(
        f"Leídos {report.read:,} · [green]nuevos {report.created:,}[/] · "
        f"nuevas versiones {report.updated:,} · sin cambios {report.unchanged:,} · "
        f"[red]rechazados {report.rejected:,}[/]"
        + (f" · referencias sin destino {report.dangling:,}" if lenient else "")
    )
    outputs = [
        (rejects, report.rejected, "Rechazos con línea y motivo"),
        (dangling, report.dangling, "Referencias sin destino"),
    ]
    for path_out, count, what in outputs:
        if count:
            err.print(f"{what} en {path_out}")
        else:
            path_out.unlink(missing_ok=True)
    for r in report.rejects[:5]:
        err.print(f"  línea {r.line} {r.resource}: {r.reason}")


@app.command("reclassify")
def reclassify(
    quiet: bool = typer.Option(False, "--quiet", help="Sin barra de progreso"),
) -> None:
    """Clasificar de nuevo las categorías sensibles de todo lo guardado (versiones anteriores
    incluidas) con las reglas actuales; correr tras actualizar, si cambiaron."""

    async def run() -> int:
        settings = get_settings()
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        try:
            total = await service.stored_versions(sessions)
            with Progress(
                TextColumn("[bold]Clasificando[/]"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=err, disable=quiet,
            ) as progress:  # fmt: skip
                task = progress.add_task("", total=max(total, 1))
                return await service.reclassify(sessions, lambda n: progress.advance(task, n))
        finally:
            await engine.dispose()

    changed = asyncio.run(run())
    typer.echo(f"{changed} versiones cambiaron de categoría")


@app.command("load-examples")
def load_examples(
    directory: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Carpeta con los ejemplos oficiales (*.json)"
    ),
    report_out: Path | None = typer.Option(
        None, "--report", help="Informe completo en JSON (cargados, rechazados, referencias)"
    ),
) -> None:
    """Carga los ejemplos oficiales de FHIR R4: recursos sueltos y Bundles transaction/batch."""
    found = examples.read(directory)

    async def run() -> examples.ExamplesReport:
        async with _environment() as env:
            caller = _caller(f"ejemplos:{directory.name}", env.audit, None, None)
            base = get_settings().public_base_url.rstrip("/") + "/fhir"
            return await examples.load(env.sessions, env.reader, caller, found, base)

    report = asyncio.run(run())
    imported = report.imported
    err.print(
        f"{imported.read} recursos: [green]{imported.created} nuevos[/], "
        f"{imported.updated} nuevas versiones, {imported.unchanged} sin cambios, "
        f"[red]{imported.rejected} rechazados[/]; {imported.dangling} referencias sin destino "
        f"en {len(report.dangling())} recursos"
    )
    table = Table(title="No cargados")
    table.add_column("archivo")
    table.add_column("motivo")
    for name, reason in sorted(report.refused().items()):
        table.add_row(name, reason if len(reason) < 200 else reason[:200] + "…")
    for result in report.bundles:
        if not result.loaded:
            table.add_row(result.name, result.reason or "")
    err.print(table)
    for result in report.bundles:
        if result.loaded:
            err.print(f"[green]{result.name}[/]: {result.kind} procesado")
    if report_out is not None:
        report_out.write_bytes(
            orjson.dumps(
                {
                    "cargados": imported.created + imported.updated + imported.unchanged,
                    "rechazados": report.refused(),
                    "referencias_sin_destino": report.dangling(),
                    "bundles": [
                        {"archivo": b.name, "tipo": b.kind, "cargado": b.loaded, "motivo": b.reason}
                        for b in report.bundles
                    ],
                },
                option=orjson.OPT_INDENT_2,
            )
        )
