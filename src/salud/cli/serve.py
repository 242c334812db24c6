"""salud serve: run the HTTP service."""

from __future__ import annotations

import typer
import uvicorn


def serve(
    host: str = typer.Option("127.0.0.1", help="Dirección de escucha"),
    port: int = typer.Option(8000, min=1, max=65_535, help="Puerto"),
    workers: int = typer.Option(1, min=1, max=64, help="Procesos"),
) -> None:
    """Sirve la API y las páginas en http://HOST:PORT."""
    # access_log off: request lines would carry CURPs from the URL; the app logs what it needs.
    uvicorn.run(
        "salud.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="info",
    )
