"""What the credentialization pages share: reading a domain or validation error as one
sentence, the module staff's gate, and redirects that carry a notice."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from salud.access.permissions import Permission
from salud.access.principal import Principal
from salud.enrollment.population import population
from salud.errors import DomainError, FieldProblem, located
from salud.web.pages import (
    _page,
    _principal,
    _secret,
)

MAX_IMAGE = 2_000_000
FINGER_NAMES = {
    1: "pulgar derecho", 2: "índice derecho", 3: "medio derecho", 4: "anular derecho",
    5: "meñique derecho", 6: "pulgar izquierdo", 7: "índice izquierdo", 8: "medio izquierdo",
    9: "anular izquierdo", 10: "meñique izquierdo",
}  # fmt: skip


def state_names(request: Request) -> dict[str, str]:
    """INEGI key → state name, from the census file the dashboard reads (cached)."""
    inegi = request.app.state.settings.shared_data_dir / "inegi"
    return {key: state.name for key, state in population(inegi).items()}


def reason_of(exc: DomainError | ValidationError) -> str:
    """One readable sentence from a domain error or a pydantic validation error."""
    if isinstance(exc, ValidationError):  # in Spanish, as the API says it (errors.located)
        found = [located(e["loc"], e["msg"], e["type"], e.get("ctx")) for e in exc.errors()]
        return "; ".join(f"{p.field}: {p.reason}" if p.field != "body" else p.reason
                         for p in found)  # fmt: skip
    problems: list[FieldProblem] = exc.problems
    if problems and exc.status != 409:  # a conflict's sentence says it all
        return "; ".join(f"{p.field}: {p.reason}" for p in problems)
    return exc.detail


def staff_gate(request: Request) -> tuple[Principal | None, Response | None]:
    """The signed-in module staff, or the page to answer instead (sign in / forbidden)."""
    principal = _principal(request)
    if principal is None:
        target = request.url.path
        return None, RedirectResponse(f"/entrar?next={target}", status_code=303)
    if not (principal.may(Permission.ENROLL) or principal.may(Permission.MODULE_MANAGE)):
        return None, _page(request, "forbidden.html", {"principal": principal}, 403)
    return principal, None


def _seal(request: Request, message: str) -> str:
    digest = hmac.new(_secret(request), b"aviso\x00" + message.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def back_to(request: Request, path: str, message: str | None = None) -> Response:
    """A redirect to `path` carrying `message`, sealed: the page shows it (`notice`) only
    with its seal, so a link made elsewhere cannot put words on a staff page."""
    query = f"?{urlencode({'aviso': message, 'firma': _seal(request, message)})}" if message else ""
    return RedirectResponse(path + query, status_code=303)


def notice(request: Request) -> str:
    """The notice a redirect of `back_to` carried, or "" when it has none or its seal fails."""
    message = request.query_params.get("aviso", "")
    seal = request.query_params.get("firma", "")
    if message and hmac.compare_digest(seal, _seal(request, message)):
        return message
    return ""
