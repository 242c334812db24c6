"""salud enrollment: the drive's jobs (send pending messages, close the day, count the
progress dashboard's figures)."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from salud.config import get_settings
from salud.enrollment import notify, progress
from salud.kit.clock import today_mx
from salud.storage.engine import create_engine, session_factory

app = typer.Typer(help="Credencialización: tareas diarias.", no_args_is_help=True)
err = Console(stderr=True)


async def _notify(limit: int) -> int:
    engine = create_engine(get_settings().database_url)
    try:
        return await notify.drain(session_factory(engine), notify.LogSender(), limit)
    finally:
        await engine.dispose()


async def _close_day() -> int:
    engine = create_engine(get_settings().database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            return await notify.close_day(session, today_mx())
    finally:
        await engine.dispose()


@app.command("notify")
def send_notifications(
    limit: int = typer.Option(1000, min=1, help="Avisos por corrida"),
) -> None:
    """Envía los avisos pendientes (p. ej. «su tarjeta está lista») y los marca enviados."""
    sent = asyncio.run(_notify(limit))
    err.print(f"{sent} avisos enviados por: {notify.LogSender.name}")


@app.command("close-day")
def close_day() -> None:
    """Marca como «no asistió» las citas de días anteriores que siguen agendadas."""
    closed = asyncio.run(_close_day())
    err.print(f"{closed} citas marcadas como no asistidas")


async def _snapshot() -> progress.Figures | None:
    engine = create_engine(get_settings().database_url)
    try:
        return await progress.refresh(session_factory(engine))
    finally:
        await engine.dispose()


@app.command("progress-snapshot")
def progress_snapshot() -> None:
    """Cuenta ahora las cifras del tablero de avance (el servidor lo hace solo cada
    SALUD_PROGRESS_REFRESH_SECONDS)."""
    figures = asyncio.run(_snapshot())
    assert figures is not None
    enrolled = sum(figures.enrolled.values())
    when = f"{figures.computed_at:%Y-%m-%d %H:%M:%S} UTC"
    err.print(f"cifras al {when}: {enrolled} personas credencializadas")
