"""The person's privacy pages (Spanish): who looked at my data (/mis-datos/accesos) and my
data-protection requests (derechos ARCO, /mis-datos/solicitudes). Thin: each handler checks
the session (and the CSRF token on the form) and calls the same services as the API, which
check the permission and write the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from salud.access import views
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.schemas import AccessRead
from salud.errors import DomainError
from salud.identity import data_requests
from salud.identity.catalogs import affiliation_catalog
from salud.identity.schemas import DataRequestCreate
from salud.kit.clock import MEXICO_CITY
from salud.web import csrf
from salud.web.forms import back_to, reason_of
from salud.web.pages import ReadSession, WriteSession, _caller, _check_csrf, _page, _principal

router = APIRouter(include_in_schema=False)

ACCESSES = "/mis-datos/accesos"
REQUESTS = "/mis-datos/solicitudes"
PAGE_SIZE = 50

ROLES = {
    Role.REGISTRATION_OPERATOR: "operador de módulo", Role.SUPERVISOR: "supervisor de módulo",
    Role.CLINICIAN: "personal clínico", Role.VERIFIER: "recepción",
    Role.INSTITUTION_ADMIN: "administración", Role.AUDITOR: "auditoría",
    Role.SYSTEM_ADMIN: "administración del sistema", Role.CITIZEN: "usted u otra persona",
    Role.CLIENT: "sistema de una institución",
}  # fmt: skip
# What an action did, by its domain and its verb (`domain:subject:verb`).
DOMAINS = {
    "identity": "sus datos del padrón", "records": "su expediente clínico",
    "credentials": "su credencial", "enrollment": "su credencialización",
    "access": "sus permisos y bitácora",
}  # fmt: skip
VERBS = {
    "read": "consultó", "search": "encontró en una búsqueda", "list": "consultó",
    "history": "consultó el historial de", "everything": "consultó completo",
    "summary": "consultó el resumen de", "create": "registró en", "update": "modificó",
    "delete": "borró de", "import": "importó en", "export": "exportó", "validate": "validó",
    "public-validate": "validó (consulta pública)", "open": "abrió por emergencia",
    "print": "imprimió", "issue": "expidió", "deliver": "entregó", "upload": "cargó",
    "file": "presentó una solicitud sobre", "decide": "resolvió una solicitud sobre",
    "link": "consultó las unidades de", "render": "generó la imagen de",
}  # fmt: skip
KINDS = {
    "access": "Acceso", "rectification": "Rectificación", "cancellation": "Cancelación",
    "opposition": "Oposición",
}  # fmt: skip
STATUSES = {"received": "En trámite", "granted": "Procedente", "denied": "Improcedente"}
# The fields a person may ask to rectify from this page (the API takes any PersonUpdate).
RECTIFIABLE = {
    "given_names": "Nombre(s)", "first_surname": "Primer apellido",
    "second_surname": "Segundo apellido", "blood_type": "Tipo de sangre",
    "phone": "Teléfono (+52…)", "email": "Correo electrónico",
}  # fmt: skip


@lru_cache(maxsize=4)
def _institutions(data_dir: Path) -> dict[int, str]:
    return {code: i.short_name for code, i in affiliation_catalog(data_dir).items()}


@dataclass(frozen=True, slots=True)
class Shown:
    """One access as the person reads it."""

    at: datetime
    who: str
    role: str
    where: str
    what: str
    why: str
    refused: bool
    emergency: bool


def _what(action: str) -> str:
    domain, _, rest = action.partition(":")
    subject, _, verb = rest.rpartition(":")
    said = f"{VERBS.get(verb, verb)} {DOMAINS.get(domain, domain)}"
    if domain == "records" and subject[:1].isupper():  # a FHIR type: which part of the record
        said += f" ({subject})"
    return said


def _shown(entry: AccessRead, institutions: dict[int, str]) -> Shown:
    where = " · ".join(
        x for x in (institutions.get(entry.institution_code or -1), entry.clues) if x
    )
    try:
        role = ROLES.get(Role(entry.role), entry.role)
    except ValueError:  # a role of an earlier release
        role = entry.role
    return Shown(
        at=entry.at.astimezone(MEXICO_CITY), who=entry.actor, role=role, where=where or "—",
        what=_what(entry.action), why=entry.reason or entry.purpose or "—",
        refused=entry.outcome != "success", emergency=entry.reason is not None,
    )  # fmt: skip


def _citizen(request: Request, path: str) -> tuple[Principal, str] | Response:
    """The signed-in person and their CURP, or the page to answer instead."""
    principal = _principal(request)
    if principal is None:
        return RedirectResponse(f"/entrar?next={path}", status_code=303)
    if principal.role is not Role.CITIZEN or principal.curp is None:
        return _page(request, "forbidden.html", {"principal": principal}, 403)
    return principal, principal.curp


@router.get(ACCESSES, response_class=HTMLResponse)
async def accesses(
    request: Request,
    session: ReadSession,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    """Who looked at my data: every access to the person's record, newest first."""
    who = _citizen(request, ACCESSES)
    if isinstance(who, Response):
        return who
    principal, curp = who
    page = await views.accesses_to_person(
        session, _caller(request, "mis-datos"), curp, limit=PAGE_SIZE, before=before
    )
    institutions = _institutions(request.app.state.settings.shared_data_dir)
    context = {
        "principal": principal, "entries": [_shown(e, institutions) for e in page.items],
        "next_before": page.next_before, "first_page": before is None,
    }  # fmt: skip
    return _page(request, "accesses.html", context)


def _requests_page(
    request: Request, principal: Principal, found: list[Any], error: str | None, status: int
) -> Response:
    context = {
        "principal": principal, "requests": found, "kinds": KINDS, "statuses": STATUSES,
        "fields": RECTIFIABLE, "error": error, "notice": request.query_params.get("aviso"),
    }  # fmt: skip
    return _page(request, "data_requests.html", context, status)


@router.get(REQUESTS, response_class=HTMLResponse)
async def my_requests(request: Request, session: ReadSession) -> Response:
    """The person's data-protection requests (folio, deadline, answer) and a form to file one."""
    who = _citizen(request, REQUESTS)
    if isinstance(who, Response):
        return who
    principal, curp = who
    found = await data_requests.of_person(session, curp, _caller(request, "arco"))
    return _requests_page(request, principal, found, None, 200)


@router.post(REQUESTS, response_class=HTMLResponse)
async def file_request(
    request: Request,
    session: WriteSession,
    kind: Annotated[str, Form(max_length=20)],
    description: Annotated[str, Form(max_length=2000)],
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    who = _citizen(request, REQUESTS)
    if isinstance(who, Response):
        return who
    principal, curp = who
    form = await request.form()
    changes = {f: v for f in RECTIFIABLE if (v := str(form.get(f, "")).strip())}
    caller = _caller(request, "arco")
    try:
        data = DataRequestCreate.model_validate({
            "kind": kind, "description": description,
            "requested_changes": changes if kind == "rectification" else (changes or None),
        })  # fmt: skip
        done = await data_requests.file(session, curp, data, caller)
    except (DomainError, ValidationError) as exc:
        await session.rollback()
        async with request.app.state.read_sessions() as reading:
            found = await data_requests.of_person(reading, curp, caller)
        status = exc.status if isinstance(exc, DomainError) else 422
        return _requests_page(request, principal, found, reason_of(exc), status)
    message = (
        f"Solicitud {done.folio} recibida; se responde a más tardar el {done.due_on:%d/%m/%Y}."
    )
    return back_to(REQUESTS, message)
