"""Entry point of the `salud` command.

Every command starts the same way (the root callback): the settings are read (malformed
SALUD_* variables end there), logging is configured as the server's is (CURPs masked, to
stderr: stdout carries data), production refuses the public development secrets, and the
KEK configuration is checked. Every command ends the same way on an expected failure (bad
input, a missing file, an unmigrated database…): `Error: <mensaje>` on stderr and exit code 2,
never a traceback (`_Salud.invoke`)."""

from __future__ import annotations

from typing import Any

import typer
from typer._click import Context  # typer vendors click: its contexts are of this class
from typer.core import TyperGroup

from salud.cli import (
    accounts,
    audit,
    clients,
    credentials,
    db,
    demo,
    enrollment,
    facilities,
    keys,
    persons,
    plan,
    records,
    serve,
    synth,
)
from salud.cli.common import EXPECTED, describe, fail, log_expected
from salud.config import get_settings
from salud.kit.logging import configure_logging
from salud.kit.sealing import Keyring

_HELP_ONLY = "salud.help_only"


class _Salud(TyperGroup):
    """The root group: it notes whether only help was asked for (nothing to check then), and
    turns an expected failure of any command into a message."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        ctx.meta[_HELP_ONLY] = self._help_only(ctx, args)
        return super().parse_args(ctx, args)

    def _help_only(self, ctx: Context, args: list[str]) -> bool:
        words = args[: args.index("--")] if "--" in args else args
        if any(word in ctx.help_option_names for word in words):
            return True
        # A group named alone (`salud db`) shows its help.
        return len(words) == 1 and isinstance(self.get_command(ctx, words[0]), TyperGroup)

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except EXPECTED as exc:
            log_expected(exc)
            fail(describe(exc))


app = typer.Typer(
    cls=_Salud,
    help="Salud Universal: padrón, unidades de salud, credencial y expediente.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _start(ctx: typer.Context) -> None:
    if ctx.resilient_parsing or ctx.meta.get(_HELP_ONLY):
        return
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, to_stderr=True)
    if settings.environment == "production" and settings.insecure_defaults():
        fail(
            "producción no arranca con secretos de desarrollo: defina "
            + ", ".join(settings.insecure_defaults())
        )
    # A KEK id that cannot be sealed under, or two KEKs under one id: refused before any work.
    Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )


app.add_typer(db.app, name="db")
app.add_typer(persons.app, name="persons")
app.add_typer(synth.app, name="synth")
app.add_typer(facilities.app, name="facilities")
app.add_typer(demo.app, name="demo")
app.add_typer(accounts.app, name="accounts")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(clients.app, name="clients")
app.add_typer(credentials.app, name="credentials")
app.add_typer(plan.app, name="plan")
app.add_typer(records.app, name="records")
app.add_typer(enrollment.app, name="enrollment")
app.command(name="serve")(serve.serve)

if __name__ == "__main__":
    app()
