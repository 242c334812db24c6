"""salud credentials: signing keys and offline verification. Print files come from the print
batches of the registration modules (enrollment/printing.py), never from here: a card printed
outside a batch could never be received at a module nor handed over."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from salud.cli.common import administer
from salud.config import Settings, get_settings
from salud.credentials import service
from salud.credentials.keyset import ALG_EDDSA, ALG_ES256, KeySet
from salud.credentials.models import SigningKey
from salud.credentials.verify import (
    OFFLINE_NOT_ENTITLED_AS_OF,
    VerificationFailed,
    offline_verdict,
    verify,
)
from salud.kit.sealing import Keyring
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(
    help="Credencial: llaves de firma, impresión y verificación.", no_args_is_help=True
)
err = Console(stderr=True)


def _ring(settings: Settings) -> Keyring:
    return Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )


def config_of(settings: Settings) -> service.CredentialConfig:
    return service.CredentialConfig(
        issuer=settings.credential_issuer,
        public_base_url=settings.public_base_url,
        validity_years=settings.credential_validity_years,
        statement_hours=settings.digital_statement_hours,
        qr_face=settings.credential_qr_face,
    )


@app.command("rotate-key")
def rotate_key(
    alg: str = typer.Option("EdDSA", help="EdDSA (Ed25519) o ES256"),
    reason: str = typer.Option(
        "rotación de la llave de firma",
        "--reason",
        help="Por qué (queda en la bitácora de auditoría, con el usuario que la ejecuta)",
    ),
) -> None:
    """Pone en servicio una llave nueva; la anterior queda publicada como retirada."""
    if alg not in ("EdDSA", "ES256"):
        raise typer.BadParameter("use EdDSA o ES256", param_hint="--alg")
    code = ALG_EDDSA if alg == "EdDSA" else ALG_ES256
    ring = _ring(get_settings())
    kid = administer(reason, lambda s, who: service.rotate_key_at_shell(s, ring, code, who))
    err.print(f"[green]Llave {kid} en servicio ({alg}).[/]")


@app.command("withdraw-key")
def withdraw_key(
    kid: str = typer.Argument(
        ...,
        help="La llave: en hexadecimal (como la lista `salud credentials keys`) o en "
        "base64url (como la publica /.well-known/jwks.json)",
    ),
    reason: str = typer.Option(..., "--reason", help="Por qué (queda en la bitácora de auditoría)"),
) -> None:
    """Retira una llave comprometida: deja de publicarse y sus tarjetas dejan de validar."""
    hex_kid, in_service = administer(
        reason, lambda s, who: service.withdraw_key_at_shell(s, kid, who)
    )
    err.print(f"[yellow]Llave {hex_kid} retirada. Reexpida las credenciales que firmó.[/]")
    if in_service:
        err.print(
            "[red]Era la llave en servicio: no se expide ninguna credencial hasta ejecutar "
            "`salud credentials rotate-key`.[/]"
        )


@app.command()
def keys() -> None:
    """Lista las llaves de firma y su vigencia."""
    settings = get_settings()

    async def run() -> list[SigningKey]:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                return list(await session.scalars(select(SigningKey).order_by(SigningKey.id)))
        finally:
            await engine.dispose()

    table = Table(title="Llaves de firma")
    for column in ("kid", "alg", "desde", "hasta", "retirada"):
        table.add_column(column)
    for k in asyncio.run(run()):
        table.add_row(
            k.kid, "EdDSA" if k.alg == ALG_EDDSA else "ES256", f"{k.valid_from:%Y-%m-%d %H:%M}",
            f"{k.valid_to:%Y-%m-%d %H:%M}" if k.valid_to else "en servicio",
            f"{k.withdrawn_at:%Y-%m-%d}" if k.withdrawn_at else "",
        )  # fmt: skip
    err.print(table)


@app.command("verify")
def verify_text(
    qr: str = typer.Argument(..., help="Texto leído del QR (Base45)"),
    keys_from: str = typer.Option(
        "http://127.0.0.1:8000/.well-known/jwks.json", "--keys", help="JWKS: URL o archivo"
    ),
) -> None:
    """Verifica una credencial sin base de datos, solo con las llaves publicadas."""
    if "://" in keys_from:
        doc = httpx.get(keys_from, timeout=10).raise_for_status().text
    else:  # a file (a missing one is said so, not taken for a URL)
        doc = Path(keys_from).read_text(encoding="utf-8")
    keyset = KeySet.from_jwks(orjson.loads(doc))
    try:
        verified = verify(qr, keyset)
    except VerificationFailed as failure:
        err.print(f"[red]NO VÁLIDA[/] ({failure.reason.value}): {failure.message}")
        raise typer.Exit(1) from None
    verdict, as_of = offline_verdict(verified)
    h = verified.claims.holder
    if verdict == OFFLINE_NOT_ENTITLED_AS_OF and as_of is not None:
        # The statement names no institution: the identity holds, the entitlement does not.
        suffix = f" (identidad; sin derechohabiencia vigente al {as_of:%Y-%m-%d %H:%M} UTC)"
    elif as_of is not None:
        suffix = f" (derechohabiencia al {as_of:%Y-%m-%d %H:%M} UTC)"
    else:
        suffix = ""
    err.print(
        f"[green]VÁLIDA[/]{suffix}: {h.full_name} · {h.curp} · tarjeta {verified.claims.sequence}"
    )
    err.print(f"Estado en línea: consulte /api/v1/credentials/validate ({verdict}).")
