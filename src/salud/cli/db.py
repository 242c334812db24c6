"""salud db: schema migrations."""

from __future__ import annotations

import typer
from rich.console import Console

from salud.config import get_settings
from salud.storage import migrate

app = typer.Typer(help="Base de datos: migraciones.", no_args_is_help=True)
err = Console(stderr=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Revisión destino")) -> None:
    """Migra la base de datos a la última versión del esquema."""
    url = get_settings().database_url
    migrate.upgrade(url, revision)
    err.print(f"[green]Esquema al día[/] ({revision})")
