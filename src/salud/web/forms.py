"""What the credentialization pages share: reading a domain or validation error as one
sentence, the module staff's gate, and redirects that carry a notice."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from salud.access.permissions import Permission
from salud.access.principal import Principal
from salud.errors import DomainError, FieldProblem
from salud.web.pages import (
    _page,
    _principal,
)

MAX_IMAGE = 2_000_000
FINGER_NAMES = {
    1: "pulgar derecho", 2: "índice derecho", 3: "medio derecho", 4: "anular derecho",
    5: "meñique derecho", 6: "pulgar izquierdo", 7: "índice izquierdo", 8: "medio izquierdo",
    9: "anular izquierdo", 10: "meñique izquierdo",
}  # fmt: skip
INEGI_STATES = {
    "01": "Aguascalientes", "02": "Baja California", "03": "Baja California Sur",
    "04": "Campeche", "05": "Coahuila", "06": "Colima", "07": "Chiapas", "08": "Chihuahua",
    "09": "Ciudad de México", "10": "Durango", "11": "Guanajuato", "12": "Guerrero",
    "13": "Hidalgo", "14": "Jalisco", "15": "México", "16": "Michoacán", "17": "Morelos",
    "18": "Nayarit", "19": "Nuevo León", "20": "Oaxaca", "21": "Puebla", "22": "Querétaro",
    "23": "Quintana Roo", "24": "San Luis Potosí", "25": "Sinaloa", "26": "Sonora",
    "27": "Tabasco", "28": "Tamaulipas", "29": "Tlaxcala", "30": "Veracruz", "31": "Yucatán",
    "32": "Zacatecas",
}  # fmt: skip


def reason_of(exc: DomainError | ValidationError) -> str:
    """One readable sentence from a domain error or a pydantic validation error."""
    if isinstance(exc, ValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e["loc"])
            parts.append(f"{where}: {e['msg']}" if where else str(e["msg"]))
        return "; ".join(parts)
    problems: list[FieldProblem] = exc.problems
    if problems and exc.status != 409:  # a conflict's sentence says it all
        return "; ".join(f"{p.field}: {p.reason}" for p in problems)
    return exc.detail


def staff_gate(request: Request, purpose: str) -> tuple[Principal | None, Response | None]:
    """The signed-in module staff, or the page to answer instead (sign in / forbidden)."""
    principal = _principal(request)
    if principal is None:
        target = request.url.path
        return None, RedirectResponse(f"/entrar?next={target}", status_code=303)
    if not (principal.may(Permission.ENROLL) or principal.may(Permission.MODULE_MANAGE)):
        return None, _page(request, "forbidden.html", {"principal": principal}, 403)
    return principal, None


def back_to(path: str, message: str | None = None) -> Response:
    query = f"?{urlencode({'aviso': message})}" if message else ""
    return RedirectResponse(path + query, status_code=303)
