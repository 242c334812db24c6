"""/api/v1/auth/oidc: citizens sign in through the identity provider (OpenID Connect)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from salud.access.oidc import OidcClient, OidcUnavailable
from salud.access.schemas import TokenResponse
from salud.access.tokens import SESSION_COOKIE
from salud.api.problems import problem
from salud.errors import Unauthorized
from salud.kit.paths import local_path

router = APIRouter(prefix="/auth/oidc", tags=["acceso"])
COOKIE = "salud_oidc"
COOKIE_PATH = "/api/v1/auth/oidc"
NEXT_COOKIE = "salud_oidc_next"  # where a browser goes after signing in (a path of this site)


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
async def login(
    request: Request,
    next: Annotated[
        str | None,
        Query(max_length=300, description="Página de este sitio a la que volver (web)"),
    ] = None,
) -> RedirectResponse:
    """With `next` (the sign-in page's "Llave MX" button), the callback signs the browser in
    to the web pages and goes there; without it, the callback answers the token as JSON (an
    app)."""
    url, flow = await _client(request).start()
    answer = RedirectResponse(url, status_code=307)
    secure = request.app.state.settings.secure_cookies(request.url.scheme)
    answer.set_cookie(COOKIE, flow, max_age=600, path=COOKIE_PATH, httponly=True,
                      samesite="lax", secure=secure)  # fmt: skip
    back = local_path(next)
    if back:
        answer.set_cookie(NEXT_COOKIE, back, max_age=600, path=COOKIE_PATH, httponly=True,
                          samesite="lax", secure=secure)  # fmt: skip
    return answer


@router.get(
    "/callback",
    summary="Regreso del proveedor de identidad: entrega el token de acceso",
    openapi_extra={"x-permission": "public"},
    response_model=TokenResponse,
)
async def callback(
    request: Request,
    state: Annotated[str, Query(max_length=200)],
    code: Annotated[str | None, Query(max_length=2000)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The provider sends back a `code`, or an `error` (RFC 6749 §4.1.2.1: the person
    cancelled, `access_denied`, or the provider failed): a browser goes back to the sign-in
    page, which says so; an app gets a 401 naming the provider's error."""
    if code is None:
        return _not_signed_in(request, error)
    principal = await _client(request).finish(code, state, request.cookies.get(COOKIE))
    tokens = request.app.state.tokens
    back = local_path(request.cookies.get(NEXT_COOKIE))
    token = tokens.issue(principal, page=bool(back))  # a browser's page session, or an app's
    answer: Response
    if back:  # a browser: the web pages' session, then where it was going
        answer = RedirectResponse(back, status_code=303)
        secure = request.app.state.settings.secure_cookies(request.url.scheme)
        # Lax, not Strict as the password sign-in's: this navigation began at the provider (a
        # cross-site redirect chain), where a browser would not send a Strict cookie to the
        # page it lands on. The forms still carry their CSRF tokens.
        answer.set_cookie(SESSION_COOKIE, token, max_age=tokens.ttl_seconds, httponly=True,
                          samesite="lax", path="/", secure=secure)  # fmt: skip
    else:
        body = TokenResponse(access_token=token, expires_in=tokens.ttl_seconds, role=principal.role)
        answer = JSONResponse(body.model_dump(mode="json"))
    answer.delete_cookie(COOKIE, path=COOKIE_PATH)
    answer.delete_cookie(NEXT_COOKIE, path=COOKIE_PATH)
    return answer


def _not_signed_in(request: Request, error: str | None) -> Response:
    answer: Response
    if local_path(request.cookies.get(NEXT_COOKIE)):
        reason = "cancelado" if error == "access_denied" else "fallido"
        answer = RedirectResponse(f"/entrar?llave={reason}", status_code=303)
    else:
        refused = Unauthorized(
            "el proveedor de identidad no inició la sesión"
            + (f" ({error})" if error else " (no entregó un código)")
        )
        answer = problem(refused.status, refused.title, refused.detail, refused.type_slug,
                         [{"field": "code", "reason": "no llegó"}], request.url.path)  # fmt: skip
    answer.delete_cookie(COOKIE, path=COOKIE_PATH)
    answer.delete_cookie(NEXT_COOKIE, path=COOKIE_PATH)
    return answer
