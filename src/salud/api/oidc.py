"""/api/v1/auth/oidc: citizens sign in through the identity provider (OpenID Connect)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from salud.access.oidc import OidcClient, OidcUnavailable
from salud.access.schemas import TokenResponse

router = APIRouter(prefix="/auth/oidc", tags=["acceso"])
COOKIE = "salud_oidc"
COOKIE_PATH = "/api/v1/auth/oidc"


def _client(request: Request) -> OidcClient:
    client: OidcClient | None = getattr(request.app.state, "oidc", None)
    if client is None:
        raise OidcUnavailable("el inicio de sesión de ciudadanos no está configurado")
    return client


@router.get(
    "/login",
    summary="Iniciar sesión como ciudadano en el proveedor de identidad",
    openapi_extra={"x-permission": "public"},
    status_code=307,
)
async def login(request: Request) -> RedirectResponse:
    url, flow = await _client(request).start()
    answer = RedirectResponse(url, status_code=307)
    answer.set_cookie(
        COOKIE,
        flow,
        max_age=600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.environment == "production",
    )
    return answer


@router.get(
    "/callback",
    summary="Regreso del proveedor de identidad: entrega el token de acceso",
    openapi_extra={"x-permission": "public"},
    response_model=TokenResponse,
)
async def callback(
    request: Request,
    code: Annotated[str, Query(max_length=2000)],
    state: Annotated[str, Query(max_length=200)],
) -> JSONResponse:
    principal = await _client(request).finish(code, state, request.cookies.get(COOKIE))
    tokens = request.app.state.tokens
    body = TokenResponse(
        access_token=tokens.issue(principal), expires_in=tokens.ttl_seconds, role=principal.role
    )
    answer = JSONResponse(body.model_dump(mode="json"))
    answer.delete_cookie(COOKIE, path=COOKIE_PATH)
    return answer
