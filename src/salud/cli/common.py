"""What every `salud` command shares: how an expected failure is told (`Error: …` on stderr,
exit code 2, never a traceback) and small checks of the options."""

from __future__ import annotations

import asyncio
import csv
import errno
import getpass
import logging
import os
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import httpx
import pydantic
import typer
from alembic.util.exc import CommandError
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.revocation import Operator
from salud.config import get_settings
from salud.errors import DomainError
from salud.identity.catalogs import NON_INSTITUTION_CODES, affiliation_catalog
from salud.storage.engine import create_engine, session_factory

log = logging.getLogger("salud.cli")
T = TypeVar("T")

# Failures that come from the input, the configuration or the surroundings (a file, the
# database, the network), not from a bug: they end the command with a message, exit code 2.
EXPECTED: tuple[type[BaseException], ...] = (
    DomainError,
    pydantic.ValidationError,
    OSError,
    ValueError,  # UnicodeDecodeError and SealError among them
    csv.Error,
    zipfile.BadZipFile,
    OperationalError,
    ProgrammingError,
    CommandError,
    httpx.HTTPError,
)

_ERRNO = {
    errno.ENOENT: "no existe",
    errno.EACCES: "sin permiso",
    errno.EPERM: "operación no permitida",
    errno.EISDIR: "es una carpeta, no un archivo",
    errno.ENOTDIR: "una parte de la ruta no es una carpeta",
    errno.ENOSPC: "no queda espacio en el disco",
    errno.EEXIST: "ya existe",
    errno.EROFS: "el sistema de archivos es de solo lectura",
    errno.ECONNREFUSED: "conexión rechazada",
    errno.ETIMEDOUT: "se agotó el tiempo de espera",
}


def fail(message: str) -> NoReturn:
    """End the command: `Error: message` on stderr, exit code 2."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)


def describe(exc: BaseException) -> str:
    """One line (or a few) saying what went wrong, in Spanish where the words are ours."""
    if isinstance(exc, DomainError):
        said = [exc.detail]
        said += [f"{p.field}: {p.reason}" for p in exc.problems if p.reason not in exc.detail]
        return "; ".join(said)
    if isinstance(exc, pydantic.ValidationError):
        return _validation(exc)
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"el texto no está en {exc.encoding.upper()}: byte 0x{exc.object[exc.start]:02x} "
            f"en la posición {exc.start}"
        )
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, csv.Error):
        return f"CSV mal formado: {exc}"
    if isinstance(exc, zipfile.BadZipFile):
        return f"el archivo no es un .xlsx (ZIP) válido: {exc}"
    if isinstance(exc, OperationalError | ProgrammingError):
        return _database(exc)
    if isinstance(exc, CommandError):
        return f"migraciones: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return _http(exc)
    return str(exc) or type(exc).__name__


def _validation(exc: pydantic.ValidationError) -> str:
    settings = exc.title == "Settings"
    said = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        if settings and where:  # name the variable to fix (never its value: it may be secret)
            where = f"SALUD_{where.split('.')[0].upper()}"
        reason = error.get("ctx", {}).get("error") if error["type"] == "value_error" else None
        said.append(f"{where}: {reason or error['msg']}" if where else str(reason or error["msg"]))
    head = "configuración inválida: " if settings else "datos inválidos: "
    return head + "; ".join(said)


def _os_error(exc: OSError) -> str:
    reason = _ERRNO.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__
    names = [os.fsdecode(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' → '.join(names)}: {reason}" if names else reason


def _database(exc: OperationalError | ProgrammingError) -> str:
    text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc).__name__
    lowered = text.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return f"la base de datos no tiene el esquema al día ({text}): ejecute `salud db upgrade`"
    return f"base de datos: {text}"


def _http(exc: httpx.HTTPError) -> str:
    try:
        url = f" {exc.request.url}"
    except RuntimeError:  # no request attached
        url = ""
    return f"HTTP{url}: {exc or type(exc).__name__}"


def check_institution(code: int | None, option: str = "--institution") -> None:
    """`code` (if given) must name an institution of the DGIS catalog (AFILIACION); the codes
    for «ninguna», «no especificado»… name none."""
    if code is None:
        return
    if code not in affiliation_catalog():
        fail(f"{option} {code}: no es una clave DGIS de institución")
    if code in NON_INSTITUTION_CODES:
        fail(f"{option} {code}: esa clave DGIS no nombra una institución")


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (links and relative paths included)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def refuse_overwriting_input(output: Path | None, inputs: list[Path], option: str) -> None:
    """`option` (a file the command writes) must not be one of the files it reads."""
    if output is None:
        return
    for path in inputs:
        if same_file(output, path):
            fail(f"{option} {output}: es el archivo de entrada {path}; elija otro archivo")


def log_expected(exc: BaseException) -> None:
    """The traceback, for whoever runs with SALUD_LOG_LEVEL=DEBUG (masked like every log)."""
    log.debug("fallo esperado en la línea de órdenes", exc_info=exc)


def operator(reason: str) -> Operator:
    """Who runs an administration command (the shell's user), for the audit log."""
    settings = get_settings()
    return Operator(
        getpass.getuser(), settings.audit_key.get_secret_value().encode(), reason,
        keep_seconds=settings.session_max_seconds + settings.token_ttl_seconds,
    )  # fmt: skip


def administer(reason: str, work: Callable[[AsyncSession, Operator], Awaitable[T]]) -> T:
    """Run one administration change (an account or client disabled, a lockout ended…) in
    one transaction, recorded in the audit log with who ran it (the shell's user) and why."""
    reason = reason.strip()
    if not 3 <= len(reason) <= 300:
        fail("--reason: diga por qué, de 3 a 300 caracteres")
    settings = get_settings()
    who = operator(reason)

    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await work(session, who)
        finally:
            await engine.dispose()

    return asyncio.run(run())
