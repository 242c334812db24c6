"""What every FHIR route shares (api/fhir.py, api/fhir_bulk.py): a refusal of the domain
turned into a FhirError (rendered as an OperationOutcome with its status, each field's
problem as an issue that names it), and the server's FHIR base URL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from sqlalchemy.exc import IntegrityError

from salud.api.problems import NUL_TEXT, TRANSIENT_TEXT
from salud.errors import DomainError
from salud.records.outcome import FhirError, Issue
from salud.storage.engine import DATA_ERRORS, is_bad_text, is_transient, is_unique_violation

CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 409: "conflict",
         412: "conflict", 422: "processing", 423: "lock-error", 503: "transient"}  # fmt: skip


async def guard(call: Callable[[], Awaitable[Response]]) -> Response:
    """Run a handler; every refusal leaves as a FhirError, so that the request's transaction
    rolls back (a transaction Bundle is all or nothing) and the handler installed by
    api/fhir.py renders it as an OperationOutcome with its status."""
    try:
        return await call()
    except DomainError as exc:
        issues = [Issue(CODES.get(exc.status, "processing"), exc.detail)]
        issues += [Issue("invalid", p.reason, p.field) for p in exc.problems]
        raise FhirError(exc.status, issues) from None
    except IntegrityError as exc:  # written at the same moment by another request
        if not is_unique_violation(exc):
            raise
        text = "otra operación escribió lo mismo al mismo tiempo; vuelva a leer y repita"
        raise FhirError.one(409, "conflict", text) from None
    except DATA_ERRORS as exc:  # a text the database cannot hold (U+0000) caught nowhere else
        if is_transient(exc):  # a deadlock broken by the database: nothing was written
            raise FhirError.one(409, "transient", TRANSIENT_TEXT) from None
        if not is_bad_text(exc):
            raise
        raise FhirError.one(400, "invalid", NUL_TEXT) from None


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"
