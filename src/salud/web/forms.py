"""What the credentialization pages share: reading a domain or validation error as one
sentence, the module staff's gate, and redirects that carry a notice."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from salud.access.permissions import Permission
from salud.access.principal import Principal
from salud.enrollment.population import population
from salud.errors import DomainError, FieldProblem, located
from salud.web.pages import (
    _bound_to,
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


# How long a notice's link shows it: the redirect is followed at once; a copy of the link
# kept (in the history, sent to someone) shows nothing after this.
NOTICE_SECONDS = 120


def _seal(request: Request, path: str, message: str, until: int) -> str:
    """An HMAC of the words, the page they are for, the session that was shown them (the
    same binding as its CSRF tokens) and until when: a seal is good for that page, that
    session and two minutes only (a message that repeats what a request carried cannot be
    sealed for someone else's page)."""
    data = "\x00".join(("aviso", _bound_to(request), path, str(until), message))
    return hmac.new(_secret(request), data.encode(), hashlib.sha256).hexdigest()[:32]


def back_to(request: Request, path: str, message: str | None = None) -> Response:
    """A redirect to `path` carrying `message`, sealed (`_seal`): the page shows it
    (`notice`) only with its seal, so a link made elsewhere cannot put words on a staff
    page."""
    if not message:
        return RedirectResponse(path, status_code=303)
    until = int(time.time()) + NOTICE_SECONDS
    seal = _seal(request, path, message, until)
    query = urlencode({"aviso": message, "hasta": until, "firma": seal})
    return RedirectResponse(f"{path}?{query}", status_code=303)


def notice(request: Request) -> str:
    """The notice a redirect of `back_to` carried, or "" when it has none, or its seal does
    not hold (another page, another session, expired, or not ours)."""
    message = request.query_params.get("aviso", "")
    seal = request.query_params.get("firma", "")
    until = request.query_params.get("hasta", "")
    if not message or not seal.isascii() or not (until.isascii() and until.isdigit()):
        return ""
    if len(until) > 12 or int(until) < time.time():
        return ""
    if hmac.compare_digest(seal, _seal(request, request.url.path, message, int(until))):
        return message
    return ""
