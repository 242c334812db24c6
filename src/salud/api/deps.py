"""Request-scoped dependencies: one database session per request, committed at the end."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request as StarletteRequest

from salud.access.context import Caller
from salud.access.schemas import is_system_purpose
from salud.access.tokens import TokenService
from salud.errors import FieldProblem, InvalidInput, Unauthorized
from salud.storage.fastread import FastReader


def _factory(request: Request) -> async_sessionmaker[AsyncSession]:  # a helper, not a dependency
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return factory


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits when the endpoint returns and rolls back on error."""
    async with _factory(request)() as s, s.begin():
        yield s


async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for reads only, in autocommit: each statement sees committed data."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.read_sessions
    async with factory() as s:
        yield s


async def reader(request: Request) -> FastReader:
    """Hot-path reads (see storage/fastread.py)."""
    found: FastReader = request.app.state.reader
    return found


# scope="function": the transaction ends (commits, or rolls back) before the response is sent,
# so a client never sees a 2xx for a write that is not yet durable, or that then failed.
Session = Annotated[AsyncSession, Depends(session, scope="function")]
Reader = Annotated[FastReader, Depends(reader)]
ReadSession = Annotated[AsyncSession, Depends(read_session, scope="function")]


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header (RFC 6750), or 401."""
    if not authorization:
        raise Unauthorized("falta el encabezado Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use Authorization: Bearer <token>")
    return token.strip()


def caller_of(request: StarletteRequest) -> Caller:
    """Who asks, from the bearer token (verified in process; no database round trip)."""
    tokens: TokenService = request.app.state.tokens
    principal = tokens.principal(bearer_token(request.headers.get("authorization")))
    purpose = request.headers.get("x-salud-purpose")
    if purpose is not None:
        # Headers arrive decoded as Latin-1; a client writes accents in UTF-8 ("Verificación"
        # was recorded as "VerificaciÃ³n", and escaped the check below).
        with contextlib.suppress(UnicodeError):
            purpose = purpose.encode("latin-1").decode("utf-8")
    if purpose is not None and not 0 < len(purpose) <= 60:
        raise InvalidInput.on("X-Salud-Purpose", "el propósito tiene de 1 a 60 caracteres")
    if purpose is not None and is_system_purpose(purpose):
        # A basis (care, consent, emergency) or a purpose the system records for its own
        # paths: the person would read it as such ("emergencia", FHIR ETREAT) in their log.
        raise InvalidInput.on(
            "X-Salud-Purpose",
            f"«{purpose.strip()}» lo registra el sistema (la base de la consulta o su propio "
            "trámite); no puede declararse: describa el propósito con otras palabras",
        )
    return Caller(principal, request.app.state.audit, purpose=purpose)


async def caller(request: Request) -> Caller:
    return caller_of(request)


CurrentCaller = Annotated[Caller, Depends(caller)]


_KNOWN_QUERY: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> frozenset[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


async def known_query(request: Request) -> None:
    """An unknown query parameter is refused by name (422), never silently ignored: a
    misspelled or unsupported filter (`?person_curp=` where there is none) would otherwise
    answer everything, unfiltered."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    known = _KNOWN_QUERY.get(id(dependant))
    if known is None:
        known = _KNOWN_QUERY[id(dependant)] = _query_names(dependant)
    refuse_unknown_query(request, known)


def refuse_unknown_query(request: StarletteRequest, known: frozenset[str]) -> None:
    """422 naming each query parameter outside `known` (also for the plain Starlette routes
    served ahead of the routers, which `known_query` does not reach)."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise InvalidInput(
            f"parámetros desconocidos: {', '.join(unknown)}"
            + (f" (admitidos: {', '.join(sorted(known))})" if known else ""),
            [FieldProblem(name, "parámetro desconocido") for name in unknown],
        )
