"""Entry point of the `salud` command."""

from __future__ import annotations

import typer

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

app = typer.Typer(
    help="Salud Universal: padrón, unidades de salud, credencial y expediente.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
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
