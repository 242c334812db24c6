"""The registration module's desk (Spanish; operators and supervisors): today's agenda,
enrollment step by step (documents, camera photo, scanner fingerprints, exceptions,
completion and receipt), card reissue and the duplicate review queue (print batches and
delivery: web/batches.py). Thin: each handler checks the session and the CSRF token and
calls the services.

A form these handlers parse themselves is read only after the gate (the session's staff, and
the CSRF cookie good for that session) and never past a bound: Starlette spools a form's
files to disk as they come, of any size, so an unchecked body could fill the disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.types import Message

from salud.access.permissions import Permission
from salud.credentials import service as credentials
from salud.credentials.schemas import IssueReason
from salud.enrollment import booking, service
from salud.enrollment import reviews as duplicate_reviews
from salud.enrollment.documents import ADULT, LABELS, MINOR, Document, DocumentKind
from salud.enrollment.schemas import (
    ENROLLMENT_STATUS_WORDS,
    DocumentsIn,
    DuplicateDecision,
    EnrollmentStart,
    ExceptionIn,
    ModuleStatus,
    ReceiptRead,
)
from salud.errors import DomainError, InvalidInput
from salud.identity.schemas import PersonCreate
from salud.kit.clock import MEXICO_CITY, today_mx
from salud.kit.streams import read_at_most
from salud.web import csrf
from salud.web.forms import (
    FINGER_NAMES,
    MAX_IMAGE,
    back_to,
    notice,
    reason_of,
    staff_gate,
    state_names,
)
from salud.web.pages import (
    ReadSession,
    WriteSession,
    _caller,
    _check_csrf,
    _page,
    _principal,
)

router = APIRouter(include_in_schema=False)

# The most a desk form may weigh: its text fields (a person's data, the documents) in
# FORM_BYTES; an image form, the image and those fields.
FORM_BYTES = 64 * 1024
UPLOAD_BYTES = MAX_IMAGE + FORM_BYTES
TOO_LARGE_IMAGE = "la imagen pesa más de 2 MB"
TOO_LARGE_FORM = "el formulario pesa demasiado"


class _TooLarge(Exception):
    """A body past its bound (said by Content-Length, or found while reading it)."""


def _gate(request: Request) -> Response | None:
    """Before a body is read: the CSRF cookie must be good for this session (the copy the
    form carries is compared with it once the bounded form is read) and the signed-in
    account must be module staff; otherwise the page to answer (sign in, forbidden)."""
    _check_csrf(request, request.cookies.get(csrf.COOKIE))
    if _principal(request) is None:  # a form's path is no page to come back to
        return RedirectResponse("/entrar?next=/modulo", status_code=303)
    return staff_gate(request)[1]


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused when its Content-Length says it is past `limit`, and read no
    further than `limit` when it does not say (chunked)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    data = await read_at_most(request.stream(), limit)
    if len(data) > limit:
        raise _TooLarge
    return data


@asynccontextmanager
async def _bounded_form(request: Request, limit: int) -> AsyncIterator[FormData]:
    """The form, parsed from a body read within `limit` (its files spooled only then), and
    its CSRF field checked; its files are closed after."""
    data = await _body(request, limit)
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": data, "more_body": False}

    form = await Request(request.scope, replay).form()
    try:
        _check_csrf(request, str(form.get(csrf.FIELD, "")))
        yield form
    finally:
        await form.close()


# --- the module desk ------------------------------------------------------------------------


@router.get("/modulo", response_class=HTMLResponse)
async def desk(request: Request, session: ReadSession) -> Response:
    principal, answer = staff_gate(request)
    if answer is not None:
        return answer
    assert principal is not None
    context: dict[str, Any] = {"principal": principal, "notice": notice(request), "module": None,
                               "agenda": [], "under_way": [], "today": today_mx(),
                               "status_words": ENROLLMENT_STATUS_WORDS}  # fmt: skip
    if principal.module_code:
        try:
            context["module"] = await booking.get_module(session, principal.module_code)
            caller = _caller(request, "registro")
            context["agenda"] = await booking.module_agenda(
                session, principal.module_code, today_mx(), caller
            )
            if principal.may(Permission.ENROLL):
                context["under_way"] = await service.open_enrollments(session, caller)
        except DomainError as exc:
            context["notice"] = reason_of(exc)
    return _page(request, "desk.html", context)


@router.post("/modulo/estado")
async def module_status(
    request: Request,
    session: WriteSession,
    status: Annotated[ModuleStatus, Form()],
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    caller = _caller(request, "registro")
    code = caller.principal.module_code or ""
    try:
        await booking.set_module_status(session, code, status, caller)
    except DomainError as exc:
        await session.rollback()
        return back_to(request, "/modulo", reason_of(exc))
    return back_to(
        request, "/modulo", "Módulo abierto." if status is ModuleStatus.OPEN else "Módulo cerrado."
    )


@router.post("/modulo/registro", response_class=HTMLResponse)
async def start(request: Request, session: WriteSession) -> Response:
    """Find the person by CURP or, with the form's data, register them; open the enrollment
    (or resume the one under way at this module)."""
    if (answer := _gate(request)) is not None:
        return answer
    try:
        async with _bounded_form(request, FORM_BYTES) as form:
            fields = {k: str(v).strip() for k, v in form.items()
                      if k != csrf.FIELD and isinstance(v, str) and v.strip()}  # fmt: skip
    except _TooLarge:
        return back_to(request, "/modulo", TOO_LARGE_FORM)
    caller = _caller(request, "registro")
    curp = fields.get("curp", "").upper()
    try:
        person = None
        if fields.get("given_names"):
            person = PersonCreate.model_validate({
                "curp": curp, "given_names": fields["given_names"],
                "first_surname": fields.get("first_surname", ""),
                "second_surname": fields.get("second_surname") or None,
                "blood_type": fields.get("blood_type", "unknown"),
                "phone": fields.get("phone") or None,
                "address": {"state": fields.get("address_state", ""),
                            "municipality": fields.get("address_municipality") or None,
                            "postal_code": fields.get("postal_code") or None,
                            "street": fields.get("street") or None},
            })  # fmt: skip
        data = EnrollmentStart(curp=curp, appointment_folio=None, person=person)
        started = await service.start_or_resume(session, data, caller)
    except (DomainError, ValidationError) as exc:
        await session.rollback()
        needs_person = isinstance(exc, DomainError) and any(
            p.field == "person" for p in exc.problems
        )
        context = {"principal": caller.principal, "error": reason_of(exc), "form": fields,
                   "needs_person": needs_person or bool(fields.get("given_names")),
                   "states": state_names(request)}  # fmt: skip
        return _page(request, "enroll_start.html", context, 422)
    folio = started.enrollment.folio
    if started.resumed:
        return back_to(request, f"/modulo/registro/{folio}", f"Registro {folio} retomado: la "
                       "visita es hoy y lo registrado se revisa con la fecha de hoy.")  # fmt: skip
    return RedirectResponse(f"/modulo/registro/{folio}", status_code=303)


@router.get("/modulo/registro/{folio}", response_class=HTMLResponse)
async def enrollment_page(
    request: Request,
    folio: str,
    session: WriteSession,
) -> Response:
    principal, answer = staff_gate(request)
    if answer is not None:
        return answer
    assert principal is not None
    try:
        found = await service.get(session, folio, _caller(request, "registro"))
    except DomainError as exc:
        context = {"principal": principal, "message": reason_of(exc)}
        return _page(request, "forbidden.html", context, exc.status)
    required = MINOR if found.minor else ADULT
    context = {
        "principal": principal, "e": found, "notice": notice(request), "labels": LABELS,
        "required": required, "given": {d.kind: d for d in found.documents},
        "finger_names": FINGER_NAMES, "supervisor": principal.may(Permission.ENROLLMENT_APPROVE),
        "next_finger": next((f for f in found.fingers_required if f not in found.fingers), 1),
        "mexico": MEXICO_CITY,
    }  # fmt: skip
    return _page(request, "enrollment.html", context)


@router.post("/modulo/registro/{folio}/documentos")
async def documents(request: Request, folio: str, session: WriteSession) -> Response:
    if (answer := _gate(request)) is not None:
        return answer
    try:
        async with _bounded_form(request, FORM_BYTES) as form:
            return await _save_documents(request, folio, session, form)
    except _TooLarge:
        return back_to(request, f"/modulo/registro/{folio}", TOO_LARGE_FORM)


async def _save_documents(
    request: Request, folio: str, session: WriteSession, form: FormData
) -> Response:
    caller = _caller(request, "registro")
    try:
        docs = []
        for kind in DocumentKind:
            if form.get(f"doc_{kind.value}") != "on":
                continue
            issued = str(form.get(f"date_{kind.value}", "")).strip()
            reference = str(form.get(f"ref_{kind.value}", "")).strip()
            try:
                on = date.fromisoformat(issued) if issued else None
            except ValueError:
                raise InvalidInput(f"{LABELS[kind]}: fecha inválida (AAAA-MM-DD)") from None
            docs.append(Document(kind=kind, issued_on=on, reference=reference or None))
        guardian = str(form.get("guardian_curp", "")).strip().upper() or None
        relation = str(form.get("guardian_relationship", "")).strip() or None
        data = DocumentsIn.model_validate({"documents": docs, "guardian_curp": guardian,
                                           "guardian_relationship": relation})  # fmt: skip
        await service.set_documents(session, folio, data, caller)
    except (DomainError, ValidationError, ValueError) as exc:
        await session.rollback()
        message = reason_of(exc) if isinstance(exc, DomainError | ValidationError) else str(exc)
        return back_to(request, f"/modulo/registro/{folio}", message)
    return back_to(request, f"/modulo/registro/{folio}", "Documentos guardados.")


async def _image_of(form: FormData, field: str) -> bytes:
    """The image of a form upload (file input), within the form's bound."""
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise InvalidInput.on(field, "elija un archivo de imagen")
    data = await upload.read(MAX_IMAGE + 1)
    if len(data) > MAX_IMAGE:
        raise InvalidInput.on(field, TOO_LARGE_IMAGE)
    return data


def _multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


@router.post("/modulo/registro/{folio}/foto")
async def photo(request: Request, folio: str, session: WriteSession) -> Response:
    """A file from the form, or a camera capture posted as the body (CSRF in a header)."""
    page = f"/modulo/registro/{folio}"
    try:
        if not _multipart(request):
            _check_csrf(request, request.headers.get(csrf.HEADER))
        if (answer := _gate(request)) is not None:
            return answer
        caller = _caller(request, "registro")
        if _multipart(request):
            async with _bounded_form(request, UPLOAD_BYTES) as form:
                image = await _image_of(form, "photo")
        else:
            image = await _body(request, MAX_IMAGE)
        await service.put_photo(session, request.app.state.keyring, folio, image, caller)
    except _TooLarge:
        return back_to(request, page, f"photo: {TOO_LARGE_IMAGE}")
    except DomainError as exc:
        await session.rollback()
        return back_to(request, page, reason_of(exc))
    return back_to(request, page, "Fotografía guardada.")


@router.post("/modulo/registro/{folio}/huella")
async def fingerprint(request: Request, folio: str, session: WriteSession) -> Response:
    page = f"/modulo/registro/{folio}"
    if not _multipart(request):
        # The finger is a field of the form beside the scanner's file: a bare body has none.
        return back_to(request, page, "envíe la huella como archivo del formulario")
    try:
        if (answer := _gate(request)) is not None:
            return answer
        caller = _caller(request, "registro")
        async with _bounded_form(request, UPLOAD_BYTES) as form:
            finger = int(str(form.get("finger", "0")))
            image = await _image_of(form, "image")
        ring = request.app.state.keyring
        await service.put_fingerprint(session, ring, folio, finger, image, caller)
    except _TooLarge:
        return back_to(request, page, f"image: {TOO_LARGE_IMAGE}")
    except (DomainError, ValueError) as exc:
        await session.rollback()
        said = reason_of(exc) if isinstance(exc, DomainError) else "indique el dedo"
        return back_to(request, page, said)
    return back_to(request, page, f"Huella del {FINGER_NAMES[finger]} guardada.")


@router.post("/modulo/registro/{folio}/excepcion")
async def exception(request: Request, folio: str, session: WriteSession) -> Response:
    if (answer := _gate(request)) is not None:
        return answer
    try:
        async with _bounded_form(request, FORM_BYTES) as form:
            waive = [str(v) for v in form.getlist("waive")]
            reason = str(form.get("reason", ""))
    except _TooLarge:
        return back_to(request, f"/modulo/registro/{folio}", TOO_LARGE_FORM)
    caller = _caller(request, "registro")
    try:
        data = ExceptionIn(
            waive=[DocumentKind(v) for v in waive if v != "fingerprints"],
            waive_fingerprints="fingerprints" in waive,
            reason=reason,
        )
        await service.approve_exception(session, folio, data, caller)
    except (DomainError, ValidationError) as exc:
        await session.rollback()
        return back_to(request, f"/modulo/registro/{folio}", reason_of(exc))
    except ValueError:  # a waiver that is no document kind
        await session.rollback()
        return back_to(request, f"/modulo/registro/{folio}", "waive: documento desconocido")
    return back_to(request, f"/modulo/registro/{folio}", "Excepción registrada.")


@router.post("/modulo/registro/{folio}/concluir")
async def complete(
    request: Request,
    folio: str,
    session: WriteSession,
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    caller = _caller(request, "registro")
    state = request.app.state
    issuance = service.Issuance(state.signer, state.keyring, state.credential_config)
    try:
        done = await service.complete(session, issuance, state.biometric_matcher, folio, caller)
    except DomainError as exc:
        await session.rollback()
        return back_to(request, f"/modulo/registro/{folio}", reason_of(exc))
    if not isinstance(done, ReceiptRead):
        return back_to(request, f"/modulo/registro/{folio}", "huellas: coinciden con otra persona; "
                     "el registro pasa a revisión del supervisor")  # fmt: skip
    return RedirectResponse(f"/modulo/registro/{folio}/comprobante", status_code=303)


@router.get("/modulo/registro/{folio}/comprobante", response_class=HTMLResponse)
async def receipt(request: Request, folio: str, session: WriteSession) -> Response:
    principal, answer = staff_gate(request)
    if answer is not None:
        return answer
    caller = _caller(request, "registro")
    try:
        found = await service.receipt(session, request.app.state.credential_config, folio, caller)
    except DomainError as exc:  # still open, another module's: a page, as the desk's others
        context = {"principal": principal, "message": reason_of(exc)}
        return _page(request, "forbidden.html", context, exc.status)
    # The day as the person lived it (Mexico's time), not the UTC date it is stored in.
    registered_on = found.completed_at.astimezone(MEXICO_CITY).date()
    shown = {"principal": principal, "r": found, "registered_on": registered_on}
    return _page(request, "receipt.html", shown)


@router.post("/modulo/reposicion")
async def module_reissue(
    request: Request,
    session: WriteSession,
    curp: Annotated[str, Form(max_length=18)],
    reason: Annotated[IssueReason, Form()] = IssueReason.LOST,
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    """A lost (or damaged) card reissued at the desk: the old card is void at once and the new
    one joins the module's next print batch."""
    _check_csrf(request, csrf_token)
    caller = _caller(request, "reposicion")
    state = request.app.state
    try:
        if reason is IssueReason.FIRST:
            raise InvalidInput.on("reason", "la primera tarjeta se expide al concluir el registro")
        done = await credentials.issue(
            session, state.signer, state.keyring, state.credential_config,
            curp.strip().upper(), reason, caller,
        )  # fmt: skip
    except DomainError as exc:
        await session.rollback()
        return back_to(request, "/modulo", reason_of(exc))
    return back_to(
        request, "/modulo", f"Tarjeta número {done.sequence} expedida; la anterior quedó anulada."
    )


# --- the duplicate review queue -------------------------------------------------------------


@router.get("/modulo/revisiones", response_class=HTMLResponse)
async def reviews(request: Request, session: ReadSession) -> Response:
    principal, answer = staff_gate(request)
    if answer is not None:
        return answer
    if principal is None or not principal.may(Permission.ENROLLMENT_APPROVE):
        return _page(request, "forbidden.html", {"principal": principal}, 403)
    try:
        found = await duplicate_reviews.list_reviews(session, _caller(request, "supervision"))
    except DomainError as exc:
        context = {"principal": principal, "message": reason_of(exc)}
        return _page(request, "forbidden.html", context, exc.status)
    matcher = request.app.state.biometric_matcher.name
    context = {"principal": principal, "reviews": found, "notice": notice(request),
               "matcher_name": matcher}  # fmt: skip
    return _page(request, "reviews.html", context)


@router.post("/modulo/revisiones/{review_id}")
async def decide(
    request: Request,
    review_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: WriteSession,
    decision: Annotated[str, Form(max_length=10)],
    note: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    caller = _caller(request, "supervision")
    try:
        data = DuplicateDecision.model_validate({"decision": decision, "note": note or None})
        await duplicate_reviews.decide_review(session, review_id, data, caller)
    except (DomainError, ValidationError) as exc:
        await session.rollback()
        return back_to(request, "/modulo/revisiones", reason_of(exc))
    return back_to(request, "/modulo/revisiones", "Revisión resuelta.")
