"""A URL with a NUL character (`%00`) is refused before any route sees it, and so is a
body past its bound (`LimitBody`).

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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        await _refusal(scope, 400, field, NUL_REASON)(scope, receive, send)


# The most any request body may weigh, read by whatever route (a JSON document, a FHIR
# Bundle, an image): FastAPI reads a body whole before the route's permission check, so an
# unbounded one lets anyone hold the server's memory. A form (urlencoded or multipart:
# Starlette spools its files to disk) has a tighter bound; the largest a page sends is a
# desk photo or fingerprint of at most 2 MB, which the desk itself refuses in words past
# that (web/desk.py): this bound is for what no page sends.
MAX_BODY = 32 * 1024 * 1024
MAX_FORM = 8 * 1024 * 1024
_FORMS = (b"multipart/form-data", b"application/x-www-form-urlencoded")


def _too_large(limit: int) -> str:
    return f"pesa más de {limit // (1024 * 1024)} MB, el máximo que se recibe"


_PAGE = (
    '<!doctype html><html lang="es"><meta charset="utf-8"><title>Demasiado grande</title>'
    "<p>Lo enviado {reason}. Vuelva a la página anterior y envíe un archivo más pequeño.</p>"
)


def _refusal(scope: Scope, status: int, field: str, reason: str) -> Response:
    """The answer for a request refused before its route: an OperationOutcome under /fhir,
    problem+json under /api and elsewhere, and a page in words for a page's form."""
    detail = f"{field} {reason}"
    path: str = scope["path"]
    if status == 413 and not path.startswith(("/api/", "/fhir", "/.well-known")):
        return Response(_PAGE.format(reason=reason), 413, media_type="text/html")
    if path.startswith("/fhir"):
        code = "too-long" if status == 413 else "invalid"
        outcome = operation_outcome([Issue(code, detail, field)])
        return Response(orjson.dumps(outcome), status, media_type="application/fhir+json")
    errors = [{"field": field, "reason": reason}]
    title = "Demasiado grande" if status == 413 else "Datos inválidos"
    slug = "too-large" if status == 413 else "invalid-input"
    return problem(status, title, detail, slug, errors)


class LimitBody:
    """Pure ASGI middleware: a body whose Content-Length says it is past its bound is
    refused (413) before any route. One sent without a length (chunked) is counted as the
    route reads it: past the bound the read ends there (the route sees the client gone) and
    whatever the route answers is replaced by the 413. So a route that reads less (a photo's
    2 MB, after its permission check) still reads no more than that."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit, declared = MAX_BODY, None
        for name, value in scope["headers"]:
            if name == b"content-type" and value.split(b";")[0].strip().lower() in _FORMS:
                limit = MAX_FORM
            elif name == b"content-length":
                declared = value
        too_large = _too_large(limit)
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                await _refusal(scope, 413, "body", too_large)(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server reads no more than declared
            return
        seen, over, answered = 0, False, False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal answered
            if not over:
                await send(message)
                return
            if not answered:  # the route's own answer (or its error) gives way to the 413
                answered = True
                await _refusal(scope, 413, "body", too_large)(scope, counted, send)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
            if not answered:
                answered = True
                await _refusal(scope, 413, "body", too_large)(scope, counted, send)


def install(app: FastAPI) -> None:
    app.add_middleware(RefuseNul)
    app.add_middleware(LimitBody)
