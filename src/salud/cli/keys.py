"""salud keys: rotation of the key-encryption key (KEK)."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.progress import Progress, TaskID
from sqlalchemy import Table

from salud.access.models import Account
from salud.config import get_settings
from salud.credentials.models import SigningKey
from salud.enrollment.models import Fingerprint
from salud.identity.models import PersonPhoto, PersonPhotoVersion
from salud.kit.sealing import Keyring
from salud.storage import rewrap as sealed_rows
from salud.storage.engine import create_engine, session_factory

ACCOUNTS: Table = Account.__table__  # type: ignore[assignment]
SIGNING_KEYS: Table = SigningKey.__table__  # type: ignore[assignment]
PHOTOS: Table = PersonPhoto.__table__  # type: ignore[assignment]
OLD_PHOTOS: Table = PersonPhotoVersion.__table__  # type: ignore[assignment]
FINGERPRINTS: Table = Fingerprint.__table__  # type: ignore[assignment]
# What is sealed: (what the summary calls it, table, column).
SEALED: tuple[tuple[str, Table, str], ...] = (
    ("secretos", ACCOUNTS, "totp_secret_sealed"),
    ("llaves de firma", SIGNING_KEYS, "private_key_sealed"),
    ("fotos", PHOTOS, "image_sealed"),
    ("fotos anteriores", OLD_PHOTOS, "image_sealed"),
    ("huellas", FINGERPRINTS, "image_sealed"),
)
_SHOWN_UNREADABLE = 100
app = typer.Typer(help="Llaves de cifrado en reposo.", no_args_is_help=True)
err = Console(stderr=True)


@app.command()
def rewrap(
    chunk: int = typer.Option(500, min=1, max=10_000, help="Filas por transacción"),
) -> None:
    """Re-envuelve con la KEK actual todo lo sellado: secretos TOTP, llaves de firma, fotos
    (las actuales y las anteriores) y huellas.

    Rotación: ponga la KEK nueva en SALUD_KEK/SALUD_KEK_ID, la anterior en
    SALUD_OLD_KEKS="id:base64", ejecute este comando, y después retire la anterior. Las fotos
    y huellas van por bloques (una transacción cada uno): si se interrumpe, vuelva a
    ejecutarlo y sigue donde quedó.

    Un valor que no se puede abrir (su KEK no está en el llavero, o fue alterado) se deja
    como está y no detiene el resto: al final se listan (tabla e id) y el comando sale con 1;
    la KEK anterior no debe retirarse mientras haya alguno."""
    settings = get_settings()
    ring = Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )

    async def run() -> dict[str, sealed_rows.RewrapResult]:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        results: dict[str, sealed_rows.RewrapResult] = {}
        try:
            with Progress(console=err, transient=True) as bar:
                for name, table, column in SEALED:
                    task = bar.add_task(name, total=await sealed_rows.count(sessions, table))

                    def advance(n: int, task: TaskID = task) -> None:
                        bar.advance(task, n)

                    results[name] = await sealed_rows.rewrap_column(
                        sessions, table, column, ring, chunk=chunk, progress=advance
                    )
        finally:
            await engine.dispose()
        return results

    results = asyncio.run(run())
    summary = ", ".join(f"{r.moved} {what}" for what, r in results.items())
    err.print(f"[green]Re-envueltos con la llave «{settings.kek_id}»: {summary}.[/]")
    unreadable = [u for r in results.values() for u in r.unreadable]
    if unreadable:
        err.print(
            f"[red]{len(unreadable)} valores sellados no se pudieron abrir y siguen como "
            "estaban (no retire la KEK anterior):[/]"
        )
        for u in unreadable[:_SHOWN_UNREADABLE]:
            err.print(f"  tabla {u.table}, id {u.row_id}: {u.reason}", soft_wrap=True)
        if len(unreadable) > _SHOWN_UNREADABLE:
            err.print(f"  … y {len(unreadable) - _SHOWN_UNREADABLE} más")
        raise typer.Exit(1)
