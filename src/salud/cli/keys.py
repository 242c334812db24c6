"""salud keys: rotation of the key-encryption key (KEK)."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.progress import Progress, TaskID
from sqlalchemy import Table

from salud.access import service
from salud.config import get_settings
from salud.credentials import signing
from salud.enrollment.models import Fingerprint
from salud.identity.models import PersonPhoto
from salud.kit.sealing import Keyring
from salud.storage import rewrap as sealed_rows
from salud.storage.engine import create_engine, session_factory

PHOTOS: Table = PersonPhoto.__table__  # type: ignore[assignment]
FINGERPRINTS: Table = Fingerprint.__table__  # type: ignore[assignment]
app = typer.Typer(help="Llaves de cifrado en reposo.", no_args_is_help=True)
err = Console(stderr=True)


@app.command()
def rewrap(
    chunk: int = typer.Option(500, min=1, max=10_000, help="Filas por transacción"),
) -> None:
    """Re-envuelve con la KEK actual todo lo sellado: secretos TOTP, llaves de firma, fotos
    y huellas.

    Rotación: ponga la KEK nueva en SALUD_KEK/SALUD_KEK_ID, la anterior en
    SALUD_OLD_KEKS="id:base64", ejecute este comando, y después retire la anterior. Las fotos
    y huellas van por bloques (una transacción cada uno): si se interrumpe, vuelva a
    ejecutarlo y sigue donde quedó."""
    settings = get_settings()
    ring = Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )
    tables = (("fotos", PHOTOS), ("huellas", FINGERPRINTS))

    async def run() -> dict[str, int]:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        moved: dict[str, int] = {}
        try:
            async with sessions() as session, session.begin():
                moved["secretos"] = await service.rewrap_secrets(session, ring)
                moved["llaves de firma"] = await signing.rewrap_keys(session, ring)
            with Progress(console=err, transient=True) as bar:
                for name, table in tables:
                    task = bar.add_task(name, total=await sealed_rows.count(sessions, table))

                    def advance(n: int, task: TaskID = task) -> None:
                        bar.advance(task, n)

                    moved[name] = await sealed_rows.rewrap_column(
                        sessions, table, "image_sealed", ring, chunk=chunk, progress=advance
                    )
        finally:
            await engine.dispose()
        return moved

    moved = asyncio.run(run())
    summary = ", ".join(f"{n} {what}" for what, n in moved.items())
    err.print(f"[green]Re-envueltos con la llave «{settings.kek_id}»: {summary}.[/]")
