"""The pages. Thin: each handler checks the session and the CSRF token, then calls the same
services as the API (which check permissions and write the audit log)."""

from __future__ import annotations

import io
import math
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import zxingcpp
from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import revocation
from salud.access import service as access
from salud.access.context import Caller
from salud.access.passwords import SignInBusy
from salud.access.permissions import Permission, Role
from salud.access.principal import Principal
from salud.access.schemas import SignIn
from salud.access.tokens import SESSION_COOKIE
from salud.credentials import service as credentials
from salud.errors import DomainError, InvalidInput, NotFound, Unauthorized
from salud.facilities import service as facilities
from salud.facilities.institutions import institutions_for_affiliations
from salud.kit.paths import local_path
from salud.kit.streams import read_at_most
from salud.web import csrf

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
SESSION = SESSION_COOKIE
MAX_FRAME = 3_000_000


async def _write_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as s, s.begin():
        yield s


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.read_sessions() as s:
        yield s


# The transaction ends before the page is sent (see api/deps.py).
WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]


def _secret(request: Request) -> bytes:
    secret: str = request.app.state.settings.token_secret.get_secret_value()
    return secret.encode()


def _principal(request: Request) -> Principal | None:
    token = request.cookies.get(SESSION)
    if not token:
        return None
    try:
        principal: Principal = request.app.state.tokens.principal(token)
    except DomainError:
        return None
    return principal


def _caller(request: Request, purpose: str) -> Caller:
    principal = _principal(request)
    if principal is None:
        raise Unauthorized("inicie sesión")
    return Caller(principal, request.app.state.audit, purpose=purpose)


def _check_csrf(request: Request, sent: str | None) -> None:
    cookie = request.cookies.get(csrf.COOKIE)
    if not csrf.valid(_secret(request), cookie, sent, _bound_to(request)):
        if csrf.given_in_a_session(cookie) and _principal(request) is None:
            raise SessionEnded(request)
        raise _CsrfRefused()


def _bound_to(request: Request) -> str:
    cookie = request.cookies.get(SESSION)
    if not cookie:
        return ""
    try:
        sid = request.app.state.tokens.seen(cookie).sid
    except DomainError:
        sid = ""
    return csrf.binding(sid or cookie)


class SessionEnded(Exception):
    """A form sent from a page whose session has ended (15 minutes idle, or the working
    day's limit): the person signs in again and comes back to that page."""

    def __init__(self, request: Request) -> None:
        super().__init__("la sesión terminó")
        referer = urlsplit(request.headers.get("referer", ""))
        same_site = referer.netloc in ("", request.url.netloc)
        self.back = (local_path(referer.path) if same_site else "") or "/"
        self.html = "text/html" in request.headers.get("accept", "")


async def session_ended(request: Request, exc: Exception) -> Response:
    """A page's form goes to sign in (then back to the page); a script's request gets 401."""
    assert isinstance(exc, SessionEnded)
    if exc.html:
        query = urlencode({"next": exc.back, "sesion": "terminada"})
        return RedirectResponse(f"/entrar?{query}", status_code=303)
    body = {"type": "https://salud.gob.mx/problemas/unauthorized", "title": "No autenticado",
            "status": 401, "detail": "la sesión terminó: inicie sesión de nuevo"}  # fmt: skip
    return JSONResponse(body, status_code=401, media_type="application/problem+json")


class _CsrfRefused(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "falta el token CSRF o no coincide: recargue la página", [], 403,
            "Solicitud rechazada", "csrf",
        )  # fmt: skip


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """Render a page and give it a CSRF token (cookie + the same value for its forms)."""
    token = request.cookies.get(csrf.COOKIE)
    if not token or not csrf.valid(_secret(request), token, token, _bound_to(request)):
        token = csrf.new_token(_secret(request), _bound_to(request))
    answer = templates.TemplateResponse(
        request, name, {**context, "csrf": token}, status_code=status
    )
    answer.set_cookie(csrf.COOKIE, token, httponly=True, samesite="strict",
                      secure=_secure(request), path="/")  # fmt: skip
    return answer


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    return _page(request, "home.html", {"principal": _principal(request)})


_LLAVE = {
    "cancelado": "Se canceló el inicio de sesión con Llave MX.",
    "fallido": "Llave MX no pudo iniciar la sesión; inténtelo de nuevo.",
}


@router.get("/entrar", response_class=HTMLResponse)
async def sign_in_form(
    request: Request, next: str = "", llave: str = "", sesion: str = ""
) -> Response:
    oidc = getattr(request.app.state, "oidc", None) is not None
    error = _LLAVE.get(llave) or (
        "Su sesión terminó: inicie sesión de nuevo para continuar." if sesion else None
    )
    context = {"next": _safe_next(next), "error": error, "oidc": oidc}
    return _page(request, "signin.html", context)


def _secure(request: Request) -> bool:
    return bool(request.app.state.settings.secure_cookies(request.url.scheme))


def _safe_next(target: str) -> str:
    # Only paths of this site: never an open redirect ("/\\evil.example" included).
    return local_path(target)


@router.post("/entrar", response_class=HTMLResponse)
async def sign_in(
    request: Request,
    session: WriteSession,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
    totp: Annotated[str, Form(max_length=10)] = "",
    next: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    host = request.client.host if request.client else "?"
    limiter = request.app.state.sign_in_limiter
    # Failures only use up the limit (colleagues sign in behind one address); a burst sent at
    # once is bounded by the hashes the server runs at once (passwords.py).
    wait = limiter.waiting(host)
    if wait:
        context = {"next": next, "error": f"Demasiados intentos: espere {wait} s."}
        answer = _page(request, "signin.html", context, 429)
        answer.headers["Retry-After"] = str(wait)  # RFC 9110 §10.2.3
        return answer
    settings = request.app.state.settings
    try:
        body = SignIn(username=username, password=password, totp=totp or None)
        principal = await access.authenticate(
            session, body, request.app.state.keyring,
            max_failures=settings.max_failed_logins, lockout_seconds=settings.lockout_seconds,
        )  # fmt: skip
    except SignInBusy as exc:
        busy = _page(request, "signin.html", {"next": next, "error": exc.detail}, 503)
        busy.headers["Retry-After"] = str(exc.wait)
        return busy
    except (DomainError, ValueError):
        limiter.hit(host)
        await session.commit()  # the failure counter persists
        error = "Usuario, contraseña o código incorrectos."
        return _page(request, "signin.html", {"next": next, "error": error}, 401)
    landing = {Role.CITIZEN: "/credencial/", Role.REGISTRATION_OPERATOR: "/modulo",
               Role.SUPERVISOR: "/modulo"}.get(principal.role, "/verificar")  # fmt: skip
    answer = RedirectResponse(_safe_next(next) or landing, status_code=303)
    tokens = request.app.state.tokens
    answer.set_cookie(SESSION, tokens.issue(principal, page=True), max_age=tokens.ttl_seconds,
                      httponly=True, samesite="strict", secure=_secure(request),
                      path="/")  # fmt: skip
    return answer


def _from_this_site(request: Request) -> bool:
    """Whether the browser says the request comes from this site's own pages (Fetch
    Metadata; the Origin header where a browser sends no Sec-Fetch-Site)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


@router.post("/salir")
async def sign_out(
    request: Request,
    session: WriteSession,
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    token = request.cookies.get(SESSION)
    if token and _principal(request) is not None:
        _check_csrf(request, csrf_token)
        # The session itself ends, not only the cookie: every token of it (a renewed one, a
        # copy in another tab or taken from this browser) is refused from now on.
        limit = request.app.state.settings.session_max_seconds
        await revocation.sign_out(session, request.app.state.tokens, token, limit)
    elif not _from_this_site(request):
        # Another site's form (a cross-site POST carries no session cookie): it must not
        # wipe the card a person keeps on the phone for when there is no network.
        return RedirectResponse("/entrar", status_code=303)
    # Without a session that still holds (it expired while the page stayed open, as the card
    # page does, or it was ended on the server) there is nothing to end, and the page's token,
    # bound to that session, no longer is good: the button must still clear the phone.
    answer = RedirectResponse("/entrar", status_code=303)
    answer.delete_cookie(SESSION, path="/")
    # A phone may be shared: the browser forgets what this site kept on it (the digital
    # card saved for offline use, the service worker's cache). W3C Clear Site Data.
    answer.headers["Clear-Site-Data"] = '"cache", "storage"'
    return answer


# --- the citizen's digital card ---------------------------------------------------------


@router.get("/credencial/", response_class=HTMLResponse)
async def card_page(request: Request) -> Response:
    # The shell carries no personal data (the service worker caches it); the card comes
    # from /credencial/datos and is kept on the phone for offline use.
    return _page(request, "card.html", {})


@router.get("/credencial/datos")
async def card_data(
    request: Request, session: ReadSession, de: Annotated[str, Query(max_length=18)] = ""
) -> Response:
    """The signed-in person's card, or (`?de=CURP`) that of a minor they answer for."""
    caller = _caller(request, "credencial-digital")
    card = await credentials.digital_card(
        session, request.app.state.signer, request.app.state.credential_config, caller,
        holder_curp=de.strip().upper() or None,
    )  # fmt: skip
    return Response(card.model_dump_json(), media_type="application/json",
                    headers={"Cache-Control": "no-store"})  # fmt: skip


@router.get("/credencial/sw.js")
async def service_worker() -> Response:
    return Response((HERE / "static" / "sw.js").read_bytes(), media_type="text/javascript",
                    headers={"Service-Worker-Allowed": "/credencial/"})  # fmt: skip


@router.get("/credencial/manifest.webmanifest")
async def manifest() -> Response:
    return Response((HERE / "static" / "manifest.webmanifest").read_bytes(),
                    media_type="application/manifest+json")  # fmt: skip


# --- the verifier (reception) -----------------------------------------------------------


@router.get("/verificar", response_class=HTMLResponse)
async def verify_page(request: Request) -> Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/entrar?next=/verificar", status_code=303)
    if not principal.may(Permission.CREDENTIAL_VALIDATE):
        return _page(request, "forbidden.html", {"principal": principal}, 403)
    return _page(request, "verify.html", {"principal": principal})


class _Scan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    qr: str = Field(min_length=1, max_length=4296)


@router.post("/verificar/texto")
async def verify_text(request: Request, body: _Scan) -> Response:
    _check_csrf(request, request.headers.get(csrf.HEADER))
    caller = _caller(request, "verificacion")
    keys = await request.app.state.signer.keys()
    result = await credentials.validate(
        request.app.state.reader, keys, request.app.state.keyring, body.qr, caller
    )
    return Response(result.model_dump_json(), media_type="application/json")


def signed_qr_in(frame: bytes) -> str | None:
    """The signed QR's text in a camera frame (zxing-cpp), or None; the link QR is skipped."""
    try:
        with Image.open(io.BytesIO(frame)) as image:
            image.load()
            found = zxingcpp.read_barcodes(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise InvalidInput.on("image", "no es una imagen JPEG o PNG legible") from None
    texts = [
        r.text
        for r in found
        if r.format == zxingcpp.BarcodeFormat.QRCode
        and r.text
        and not r.text.upper().startswith("HTTP")
    ]
    return texts[0] if texts else None


@router.post("/verificar/imagen")
async def verify_image(request: Request) -> Response:
    """A camera frame from the page: decoded here, so any phone with a browser works."""
    _check_csrf(request, request.headers.get(csrf.HEADER))
    caller = _caller(request, "verificacion")
    if not caller.principal.may(Permission.CREDENTIAL_VALIDATE):
        await caller.allow(
            Permission.CREDENTIAL_VALIDATE, "credentials:card:validate", "credential"
        )
    frame = await read_at_most(request.stream(), MAX_FRAME)  # never held past the limit
    if len(frame) > MAX_FRAME:
        raise InvalidInput.on("image", "la imagen pesa más de 3 MB")
    text = signed_qr_in(frame)
    if text is None:
        return JSONResponse({"found": False})
    keys = await request.app.state.signer.keys()
    result = await credentials.validate(
        request.app.state.reader, keys, request.app.state.keyring, text, caller
    )
    return Response(
        '{"found":true,"result":' + result.model_dump_json() + "}", media_type="application/json"
    )


# --- the card's second QR: nearest units ------------------------------------------------


# The box the page takes a position in (Mexico and a margin), as the API's.
_LAT, _LNG = (14.0, 33.5), (-118.5, -86.0)
_DEGREES = re.compile(r"-?[0-9]{1,3}(\.[0-9]{1,12})?", re.ASCII)


def _coordinate(text: str | None, name: str, bounds: tuple[float, float]) -> float | None:
    """A coordinate of the page's query, or InvalidInput naming it (in words a person reads:
    the page shows the reason, not a JSON problem)."""
    if text is None or text == "":
        return None
    # Plain decimal degrees only: float() would also take "1_9.4" or other scripts' digits.
    value = float(text) if _DEGREES.fullmatch(text) else math.nan
    if not bounds[0] <= value <= bounds[1]:  # NaN too
        raise InvalidInput.on(name, "la ubicación no está en México; vuelva a intentarlo")
    return value


@router.get("/U/{code}", response_class=HTMLResponse)
@router.get("/u/{code}", response_class=HTMLResponse)
async def nearest_units(
    request: Request,
    code: str,
    session: ReadSession,
    lat: Annotated[list[str] | None, Query()] = None,
    lng: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The card's second QR, opened in a phone's browser: every answer is a page, errors
    included (a card no longer current, a position outside Mexico)."""
    # Codes that name no card, per address: guessing is slowed, while a holder opening their
    # own link (many phones may share one carrier address) is never counted.
    host = request.client.host if request.client else "?"
    limiter = request.app.state.link_limiter

    def page(error: str | None, status: int = 200, **more: Any) -> Response:
        context = {"code": code, "results": None, "origin": None, "error": error, **more}
        return _page(request, "units.html", context, status)

    wait = limiter.waiting(host)
    if wait:
        answer = page(f"Demasiadas consultas desde esta conexión: espere {wait} s.", 429)
        answer.headers["Retry-After"] = str(wait)
        return answer
    if len(lat or []) > 1 or len(lng or []) > 1:
        return page("La ubicación llegó dos veces; vuelva a intentarlo.", 422)
    try:
        here = (
            _coordinate(lat[0] if lat else None, "lat", _LAT),
            _coordinate(lng[0] if lng else None, "lng", _LNG),
        )
    except InvalidInput as exc:
        reason = exc.problems[0].reason
        return page(reason[:1].upper() + reason[1:] + ".", 422)
    if (here[0] is None) != (here[1] is None):
        return page("La ubicación llegó incompleta; vuelva a intentarlo.", 422)
    try:
        institutions, person = await credentials.link_target(session, code, request.app.state.audit)
    except NotFound as exc:
        if not isinstance(exc, credentials.LinkNotCurrent):  # a void card's own holder isn't
            limiter.hit(host)  # guessing: only codes that name no card are counted
        return page(
            "Este enlace no corresponde a una credencial vigente: si su tarjeta fue "
            "repuesta, use el código de la tarjeta nueva.",
            404,
        )
    origin = "su ubicación"
    lat_at, lng_at = here
    if lat_at is None or lng_at is None:
        point = (
            facilities.address_point(
                person.address_state, person.address_municipality, person.address_locality
            )
            if person is not None and person.address_state
            else None
        )
        if point is None:
            return page(None)
        lat_at, lng_at, _ = point
        origin = "su domicilio registrado"
    query = facilities.nearest_query(
        lat_at, lng_at, k=5, institutions=institutions_for_affiliations(institutions)
    )
    results = await facilities.nearest(session, query, request.app.state.facilities_index)
    return page(None, results=results, origin=origin, from_address=here[0] is None)
