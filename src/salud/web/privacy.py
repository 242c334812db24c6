"""The person's privacy pages (Spanish): who looked at my data (/mis-datos/accesos) and my
data-protection requests (derechos ARCO, /mis-datos/solicitudes). Thin: each handler checks
the session (and the CSRF token on the form) and calls the same services as the API, which
check the permission and write the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from salud.access import views
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.schemas import AccessRead
from salud.errors import DomainError, located
from salud.identity import data_requests
from salud.identity.catalogs import affiliation_catalog
from salud.identity.schemas import DataRequestCreate, DataRequestRead
from salud.kit.clock import MEXICO_CITY
from salud.web import csrf
from salud.web.forms import reason_of
from salud.web.pages import ReadSession, WriteSession, _caller, _check_csrf, _page, _principal

router = APIRouter(include_in_schema=False)

ACCESSES = "/mis-datos/accesos"
REQUESTS = "/mis-datos/solicitudes"
PAGE_SIZE = 50

ROLES = {
    Role.REGISTRATION_OPERATOR: "operador de módulo", Role.SUPERVISOR: "supervisor de módulo",
    Role.CLINICIAN: "personal clínico", Role.VERIFIER: "recepción",
    Role.INSTITUTION_ADMIN: "administración", Role.AUDITOR: "auditoría",
    Role.SYSTEM_ADMIN: "administración del sistema", Role.CITIZEN: "ciudadana o ciudadano",
    Role.CLIENT: "sistema de una institución",
}  # fmt: skip
# What each action did, as the person reads it ("who" did this to "your" data). A FHIR
# type's reads and writes are worded by their verb (records:{Type}:verb). A test checks
# that every action the code records has its words here.
ACTIONS = {
    "access:account:create": "creó una cuenta",
    "access:account:totp": "renovó el segundo factor de una cuenta",
    "access:account:unlock": "desbloqueó una cuenta",
    "access:audit:read": "consultó la bitácora de auditoría",
    "access:care:list": "consultó sus relaciones de atención",
    "access:care:record": "registró que usted se atiende en su unidad",
    "access:care:review": "revisó una relación de atención",
    "access:client:create": "registró un sistema",
    "access:consent:grant": "registró su consentimiento",
    "access:consent:read": "consultó sus consentimientos",
    "access:consent:revoke": "retiró un consentimiento",
    "access:emergency:list": "consultó los accesos de emergencia",
    "access:emergency:open": "abrió su expediente por emergencia",
    "access:emergency:review": "revisó un acceso de emergencia",
    "access:person-log:read": "consultó quién vio sus datos",
    "credentials:card:print": "imprimió su tarjeta",
    "credentials:card:render": "generó la imagen de su tarjeta",
    "credentials:card:validate": "verificó su credencial",
    "credentials:credential:issue": "expidió su credencial",
    "credentials:credential:list": "consultó sus credenciales",
    "credentials:credential:public-validate": "verificó su credencial (consulta pública)",
    "credentials:digital:refresh": "actualizó su credencial digital",
    "credentials:link:open": "abrió el enlace de unidades cercanas de su tarjeta",
    "enrollment:agenda:read": "consultó la agenda del módulo",
    "enrollment:appointment:book": "agendó su cita",
    "enrollment:appointment:cancel": "canceló su cita",
    "enrollment:appointment:change": "cambió su cita",
    "enrollment:appointment:read": "consultó su cita",
    "enrollment:batch:create": "puso su tarjeta en un lote de impresión",
    "enrollment:batch:list": "consultó los lotes de impresión",
    "enrollment:batch:print": "imprimió el lote de su tarjeta",
    "enrollment:batch:read": "consultó el lote de su tarjeta",
    "enrollment:capture:upload": "capturó sus datos biométricos",
    "enrollment:card:deliver": "le entregó su tarjeta",
    "enrollment:documents:update": "revisó sus documentos",
    "enrollment:enrollment:cancel": "canceló su registro",
    "enrollment:enrollment:complete": "completó su registro",
    "enrollment:enrollment:read": "consultó su registro",
    "enrollment:enrollment:review": "revisó su registro",
    "enrollment:enrollment:start": "inició su registro",
    "enrollment:exception:approve": "aprobó una excepción en su registro",
    "enrollment:fingerprint:update": "capturó sus huellas",
    "enrollment:module:access": "consultó el módulo",
    "enrollment:notification:read": "consultó sus avisos",
    "enrollment:photo:update": "tomó su fotografía",
    "enrollment:receipt:read": "consultó su comprobante",
    "enrollment:review:decide": "resolvió una revisión de su registro",
    "enrollment:review:list": "consultó las revisiones pendientes",
    "identity:data-request:answer": "respondió su solicitud ARCO",
    "identity:data-request:file": "recibió su solicitud ARCO",
    "identity:data-request:list": "consultó las solicitudes ARCO",
    "identity:data-request:read": "consultó sus solicitudes ARCO",
    "identity:guardian:act": "actuó como tutor de un menor",
    "identity:guardian:end": "terminó un vínculo de tutela",
    "identity:guardian:link": "registró un vínculo de tutela",
    "identity:guardian:list": "consultó sus tutores",
    "identity:guardian:wards": "consultó los menores a su cargo",
    "identity:person:create": "lo registró en el padrón",
    "identity:person:history": "consultó el historial de sus datos",
    "identity:person:import": "lo importó al padrón",
    "identity:person:read": "consultó sus datos del padrón",
    "identity:person:search": "lo encontró en una búsqueda del padrón",
    "identity:person:update": "modificó sus datos del padrón",
    "identity:photo:history": "consultó el historial de su fotografía",
    "identity:photo:read": "vio una de sus fotografías",
    "identity:photo:update": "cambió su fotografía",
    "records:Patient:everything": "consultó su expediente completo",
    "records:Patient:export": "exportó su expediente",
    "records:Patient:summary": "consultó el resumen de su expediente",
    "records:bulk:import": "importó datos a su expediente",
    "records:export:start": "pidió exportar su expediente",
    "records:restriction:list": "consultó sus restricciones",
    "records:restriction:set": "cambió sus restricciones",
    "records:Bundle:transaction": "escribió en su expediente",
    "access:account:disable": "desactivó una cuenta",
    "access:account:enable": "reactivó una cuenta",
    "access:client:disable": "desactivó un sistema",
    "access:client:enable": "reactivó un sistema",
    "credentials:key:rotate": "cambió la llave de firma de las credenciales",
    "credentials:key:withdraw": "retiró una llave de firma de las credenciales",
    "enrollment:calendar:activate": "activó un calendario de credencialización",
    "enrollment:calendar:create": "creó un calendario de credencialización",
    "enrollment:calendar:manage": "administró los calendarios",
    "enrollment:module:assign": "asignó personal a un módulo",
    "enrollment:module:create": "abrió un módulo de registro",
    "enrollment:module:manage": "administró un módulo de registro",
    "enrollment:module:staff": "consultó el personal de un módulo",
    "enrollment:phase:create": "abrió una fase de credencialización",
    "enrollment:progress:read": "consultó el avance de la credencialización",
    "records:AuditEvent:read": "consultó quién vio sus datos",
    "records:AuditEvent:search": "consultó quién vio sus datos",
    "records:Coverage:read": "consultó su derechohabiencia",
    "records:Patient:read": "consultó su ficha de paciente",
    "records:Patient:search": "lo encontró en una búsqueda de pacientes",
    "records:RelatedPerson:read": "consultó sus tutores",
    "records:export:unowned": "intentó ver una exportación ajena",
    # A card's state changes (credentials/service.py, enrollment/printing.py).
    "credentials:credential:issued": "expidió su credencial",
    "credentials:credential:superseded": "anuló su tarjeta anterior",
    "credentials:credential:suspended": "suspendió su credencial",
    "credentials:credential:active": "reactivó su credencial",
    "credentials:credential:revoked": "revocó su credencial",
    "credentials:credential:printed": "imprimió su tarjeta",
    "credentials:credential:ready_for_pickup": "dejó su tarjeta lista para recoger",
    "credentials:credential:delivered": "le entregó su tarjeta",
    "enrollment:batch:shipped": "envió su tarjeta a su módulo",
    "enrollment:batch:received": "recibió su tarjeta en su módulo",
}
RECORD_VERBS = {
    "read": "consultó",
    "search": "encontró en una búsqueda",
    "history": "consultó el historial de",
    "create": "registró",
    "update": "modificó",
    "delete": "borró",
    "validate": "validó",
}
PURPOSES = {
    "care": "atención en la unidad",
    "consent": "con su consentimiento",
    "emergency": "emergencia",
    "avance": "avance de la credencialización",
    "arco": "derechos ARCO",
    "avisos": "sus avisos",
    "credencial-digital": "credencial digital",
    "entrega": "entrega de tarjeta",
    "impresion": "impresión de tarjetas",
    "mis-datos": "usted consultó su bitácora",
    "registro": "registro en módulo",
    "reposicion": "reposición de tarjeta",
    "supervision": "supervisión del módulo",
    "tutor": "como tutor de un menor",
    "verificacion": "verificación de la credencial",
    "cita": "cita de credencialización",
    "importacion": "importación de datos",
    "administracion": "administración",
}
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
    said = ACTIONS.get(action)
    if said is not None:
        return said
    domain, _, rest = action.partition(":")
    kind, _, verb = rest.rpartition(":")
    if domain == "records" and kind[:1].isupper() and verb in RECORD_VERBS:
        return f"{RECORD_VERBS[verb]} en su expediente ({kind})"
    return action  # an action of an earlier release: shown as recorded


def _shown(entry: AccessRead, institutions: dict[int, str], me: str = "") -> Shown:
    where = " · ".join(
        x for x in (institutions.get(entry.institution_code or -1), entry.clues) if x
    )
    try:
        role = ROLES.get(Role(entry.role), entry.role)
    except ValueError:  # not a role: the public (no sign-in), or one of an earlier release
        role = "sin sesión" if entry.role == "public" else entry.role
    who = {"anonimo": "alguien sin sesión", me: "usted"}.get(entry.actor, entry.actor)
    purpose = PURPOSES.get(entry.purpose or "", entry.purpose)
    return Shown(
        at=entry.at.astimezone(MEXICO_CITY), who=who, role=role, where=where or "—",
        what=_what(entry.action), why=entry.reason or purpose or "—",
        refused=entry.outcome != "success", emergency=entry.purpose == "emergency",
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
async def accesses(request: Request, session: ReadSession, before: str = "") -> Response:
    """Who looked at my data: every access to the person's record, newest first."""
    who = _citizen(request, ACCESSES)
    if isinstance(who, Response):
        return who
    principal, curp = who
    start = _entry_number(before)
    if start is False:
        error = "Página inválida: vuelva a la primera."
        context = {"principal": principal, "entries": [], "next_before": None,
                   "first_page": True, "error": error}  # fmt: skip
        return _page(request, "accesses.html", context, 422)
    page = await views.accesses_to_person(
        session, _caller(request, "mis-datos"), curp, limit=PAGE_SIZE, before=start
    )
    institutions = _institutions(request.app.state.settings.shared_data_dir)
    shown = [_shown(e, institutions, principal.username) for e in page.items]
    context = {
        "principal": principal, "entries": shown,
        "next_before": page.next_before, "first_page": start is None, "error": None,
    }  # fmt: skip
    return _page(request, "accesses.html", context)


def _entry_number(text: str) -> int | Literal[False] | None:
    """The `before` of a page link: None (the first page), an entry number, or False."""
    if not text:
        return None
    if text.isascii() and text.isdigit() and len(text) <= 18 and int(text) >= 1:
        return int(text)
    return False


@dataclass(frozen=True, slots=True)
class ShownRequest:
    """A data-protection request as the person reads it (dates in Mexico's time)."""

    folio: str
    kind: str
    status: str
    overdue: bool
    description: str
    filed_on: date
    due_on: date
    answer: str | None
    answered_on: date | None


def _request_shown(r: DataRequestRead) -> ShownRequest:
    answered = r.answered_at.astimezone(MEXICO_CITY).date() if r.answered_at else None
    return ShownRequest(
        r.folio, KINDS.get(r.kind, r.kind), STATUSES.get(r.status, r.status), r.overdue,
        r.description, r.filed_at.astimezone(MEXICO_CITY).date(), r.due_on, r.answer, answered,
    )  # fmt: skip


_FIELDS = {"kind": "Tipo", "description": "Qué pide", "requested_changes": "Los datos correctos"}


def _readable(exc: DomainError | ValidationError) -> str:
    """The reason, naming the form's fields as the form does."""
    if isinstance(exc, DomainError):
        return reason_of(exc)
    said = []
    for e in exc.errors():
        found = located(e["loc"], e["msg"], e["type"], e.get("ctx"))
        name = found.field.removeprefix("requested_changes.")
        label = RECTIFIABLE.get(name) or _FIELDS.get(name.split(".")[0], name)
        said.append(f"{label}: {found.reason}")
    return "; ".join(said)


def _requests_page(
    request: Request, principal: Principal, found: list[DataRequestRead], error: str | None,
    status: int,
) -> Response:  # fmt: skip
    filed = request.query_params.get("presentada", "")
    just = next((r for r in found if r.folio == filed), None)  # told from the data, not the URL
    notice = (
        f"Solicitud {just.folio} recibida; se responde a más tardar el {just.due_on:%d/%m/%Y}."
        if just is not None
        else None
    )
    context = {
        "principal": principal, "requests": [_request_shown(r) for r in found],
        "kinds": KINDS, "fields": RECTIFIABLE, "error": error, "notice": notice,
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
    kind: Annotated[str, Form(max_length=20)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
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
        return _requests_page(request, principal, found, _readable(exc), status)
    return RedirectResponse(f"{REQUESTS}?presentada={done.folio}", status_code=303)
