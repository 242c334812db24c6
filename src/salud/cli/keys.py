"""salud keys: rotation of the key-encryption key (KEK)."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from salud.access import service
from salud.config import get_settings
from salud.credentials import signing
from salud.kit.sealing import Keyring
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(help="Llaves de cifrado en reposo.", no_args_is_help=True)
err = Console(stderr=True)


@app.command()
def rewrap() -> None:
    """Re-envuelve los secretos sellados con la KEK actual.

    Rotación: ponga la KEK nueva en SALUD_KEK/SALUD_KEK_ID, la anterior en
    SALUD_OLD_KEKS="id:base64", ejecute este comando, y después retire la anterior."""
    settings = get_settings()
    ring = Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session, session.begin():
                moved = await service.rewrap_secrets(session, ring)
                return moved + await signing.rewrap_keys(session, ring)
        finally:
            await engine.dispose()

    moved = asyncio.run(run())
    err.print(
        f"[green]{moved} secretos (TOTP y llaves de firma) re-envueltos "
        f"con la llave «{settings.kek_id}».[/]"
    )
