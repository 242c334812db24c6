"""/api/v1/oauth/token: the OAuth2 token endpoint for machine clients (RFC 6749 §4.4, form
encoded, client authentication by HTTP Basic or form fields). Errors follow RFC 6749 §5.2,
the format OAuth2 client libraries expect, rather than problem+json."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from salud.access import clients
from salud.access.passwords import SignInBusy
from salud.api.deps import Session

router = APIRouter(prefix="/oauth", tags=["acceso"])


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return client_id, secret


def _error(exc: clients.OAuthError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="salud"'} if exc.status == 401 else {}
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers={**headers, "Cache-Control": "no-store"},
    )


@router.post(
    "/token",
    summary="Token de acceso para sistemas institucionales (client credentials)",
    openapi_extra={"x-permission": "public"},
)
async def token(
    request: Request,
    session: Session,
    grant_type: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    if grant_type is None:  # RFC 6749 §5.2, as every other error of this endpoint
        return _error(clients.OAuthError("invalid_request", "falta grant_type"))
    if grant_type != "client_credentials":
        return _error(
            clients.OAuthError("unsupported_grant_type", "solo se admite client_credentials")
        )
    credentials = _basic(request) or (
        (client_id, client_secret) if client_id and client_secret else None
    )
    if credentials is None:
        return _error(clients.OAuthError("invalid_client", "faltan las credenciales", 401))
    # Failed attempts only, in a limit of their own: a hospital system asking for tokens and
    # the staff signing in behind the same address never lock each other out.
    limiter = request.app.state.client_limiter
    host = request.client.host if request.client else "desconocido"
    wait = limiter.waiting(host)  # wrong secrets only (a burst is bounded by passwords.py)
    if wait:
        refused = _error(clients.OAuthError("slow_down", "demasiados intentos", 429))
        refused.headers["Retry-After"] = str(wait)
        return refused
    try:
        principal = await clients.authenticate(session, *credentials, scope)
    except SignInBusy as busy:
        refused = _error(clients.OAuthError("temporarily_unavailable", busy.detail, 503))
        refused.headers["Retry-After"] = str(busy.wait)
        return refused
    except clients.OAuthError as exc:
        if exc.status == 401:  # a wrong client or secret; a scope not granted is no guess
            limiter.hit(host)
        return _error(exc)
    tokens = request.app.state.tokens
    return JSONResponse(
        {
            "access_token": tokens.issue(principal),
            "token_type": "bearer",
            "expires_in": tokens.ttl_seconds,
            "scope": " ".join(sorted(principal.scopes)),
        },
        headers={"Cache-Control": "no-store"},
    )
