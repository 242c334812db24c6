"""A URL with a NUL character (`%00`) is refused before any route sees it.

PostgreSQL's text cannot hold U+0000: a search value, a form or a path segment carrying one
would reach the database and fail there (a 500). FHIR strings may not hold it either (R4
datatypes: no character below U+0020 but tab, CR and LF). The answer names the parameter,
as a problem+json, or an OperationOutcome under /fhir. FHIR bodies are checked where they
are read (records/validation.parse); a text of another body that reaches PostgreSQL with a
NUL is refused there and answered 400 (api/problems, api/fhir_refusals)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from salud.api.problems import problem
from salud.records.outcome import Issue, operation_outcome

NUL_REASON = "contiene el carácter nulo (U+0000), que no se admite"


def _nul_field(scope: Scope) -> str | None:
    if "\x00" in scope["path"]:
        return "path"
    raw: bytes = scope.get("query_string", b"")
    if b"%00" not in raw and b"\x00" not in raw:
        return None
    text = raw.decode("latin-1")
    for name, value in parse_qsl(text, keep_blank_values=True, encoding="latin-1"):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "?") or "query"
    return "query"


class RefuseNul:
    """Pure ASGI middleware: one bytes test per request when there is no NUL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        field = _nul_field(scope) if scope["type"] == "http" else None
        if field is None:
            await self.app(scope, receive, send)
            return
        detail = f"{field} {NUL_REASON}"
        if scope["path"].startswith("/fhir"):
            outcome = operation_outcome([Issue("invalid", detail, field)])
            answer = Response(orjson.dumps(outcome), 400, media_type="application/fhir+json")
        else:
            errors = [{"field": field, "reason": NUL_REASON}]
            answer = problem(400, "Datos inválidos", detail, "invalid-input", errors)
        await answer(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_middleware(RefuseNul)
