"""/api/v1/auth: staff and citizens sign in for a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from salud.access import revocation, service
from salud.access.passwords import SignInBusy
from salud.access.schemas import Me, SignIn, TokenResponse
from salud.api.deps import CurrentCaller, Session, bearer_token
from salud.errors import DomainError

router = APIRouter(prefix="/auth", tags=["acceso"])


class TooManyAttempts(DomainError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"demasiados intentos desde esta dirección; espere {retry_after} s",
            [],
            429,
            "Demasiadas solicitudes",
            "rate-limited",
        )
        self.wait = retry_after  # Retry-After (api/problems.py)


@router.post(
    "/token",
    summary="Iniciar sesión: usuario, contraseña y código TOTP → token de acceso",
    openapi_extra={"x-permission": "public"},
    responses={401: {"description": "Credenciales incorrectas o cuenta bloqueada"}},
)
async def sign_in(body: SignIn, request: Request, session: Session) -> TokenResponse:
    limiter = request.app.state.sign_in_limiter
    client = request.client.host if request.client else "desconocido"
    # Failures only use up an address's limit (a desk's staff share one address); a burst of
    # guesses sent at once is bounded by the hashes the server runs at once (passwords.py).
    wait = limiter.waiting(client)
    if wait:
        raise TooManyAttempts(wait)
    settings = request.app.state.settings
    try:
        principal = await service.authenticate(
            session,
            body,
            request.app.state.keyring,
            max_failures=settings.max_failed_logins,
            lockout_seconds=settings.lockout_seconds,
        )
    except SignInBusy:
        raise  # nothing was tried: not a failure of the address
    except DomainError:
        limiter.hit(client)
        # The failure counter must persist although the request fails.
        await session.commit()
        raise
    tokens = request.app.state.tokens
    return TokenResponse(
        access_token=tokens.issue(principal), expires_in=tokens.ttl_seconds, role=principal.role
    )


@router.post(
    "/sign-out",
    status_code=204,
    summary="Cerrar sesión: el token presentado deja de valer en todos los servidores",
    openapi_extra={"x-permission": "any"},
)
async def sign_out(request: Request, session: Session, caller: CurrentCaller) -> Response:
    token = bearer_token(request.headers.get("authorization"))  # valid: `caller` checked it
    limit = request.app.state.settings.session_max_seconds
    await revocation.sign_out(session, request.app.state.tokens, token, limit)
    return Response(status_code=204)


@router.get("/me", summary="Quién soy y qué puedo hacer", openapi_extra={"x-permission": "any"})
async def me(caller: CurrentCaller) -> Me:
    p = caller.principal
    return Me(
        username=p.username,
        role=p.role,
        permissions=sorted(perm.value for perm in p.permissions),
        institution_code=p.institution_code,
        clues=p.clues,
    )
