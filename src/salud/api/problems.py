"""RFC 9457 problem details, rendered in one place for every error the API can give."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from salud.errors import DomainError, located
from salud.storage.engine import DATA_ERRORS, is_bad_text, is_transient, is_unique_violation

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://salud.gob.mx/problemas/"
NUL_TEXT = "un texto contiene el carácter nulo (U+0000), que no se admite"


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    errors: list[dict[str, str]] | None = None,
    instance: str | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON)


def _problem_of(err: dict[str, Any]) -> dict[str, str]:
    loc = list(err.get("loc", ()))
    if loc and loc[0] in {"body", "query", "path", "header"}:
        loc = loc[1:] or ([] if loc[0] == "body" else loc)
    found = located(loc, str(err.get("msg", "valor inválido")), err.get("type"), err.get("ctx"))
    return {"field": found.field, "reason": found.reason}


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    errors = [{"field": p.field, "reason": p.reason} for p in exc.problems]
    answer = problem(exc.status, exc.title, exc.detail, exc.type_slug, errors, request.url.path)
    wait = getattr(exc, "wait", None)  # a rate limit's (RFC 9110 §10.2.3)
    if exc.status in (429, 503) and isinstance(wait, int):
        answer.headers["Retry-After"] = str(wait)
    return answer


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [_problem_of(e) for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors) or "datos inválidos"
    return problem(422, "Datos inválidos", detail, "invalid-input", errors, request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        401: "No autenticado",
        403: "Prohibido",
        404: "No encontrado",
        405: "Método no permitido",
    }
    title = titles.get(exc.status_code, "Error")
    response = problem(
        exc.status_code, title, str(exc.detail), f"http-{exc.status_code}", None, request.url.path
    )
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


async def _integrity_error(request: Request, exc: Exception) -> Response:
    """A unique index refused a row another request wrote at the same moment (the service's
    own check had passed for both): a 409 to repeat, not a 500. Anything else is a fault."""
    if not is_unique_violation(exc):
        raise exc
    return problem(
        409, "Conflicto",
        "otra operación registró lo mismo al mismo tiempo; vuelva a consultar y repita",
        "conflict", None, request.url.path,
    )  # fmt: skip


TRANSIENT_TEXT = "otra operación usaba los mismos datos al mismo tiempo; nada se guardó: repita"


async def _data_error(request: Request, exc: Exception) -> Response:
    """A text the database cannot hold (U+0000) that no earlier check caught: a 400, not a
    500; a transaction the database ended to break a deadlock: a 409 to repeat (nothing was
    written). Any other database error is a fault."""
    if is_transient(exc):
        return problem(409, "Conflicto", TRANSIENT_TEXT, "conflict", None, request.url.path)
    if not is_bad_text(exc):
        raise exc
    return problem(400, "Datos inválidos", NUL_TEXT, "invalid-input", None, request.url.path)


def install(app: FastAPI) -> None:
    for kind in DATA_ERRORS:
        app.add_exception_handler(kind, _data_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
