"""Credentialization over HTTP: modules, phases and calendars, appointments (public booking
by CURP, rate-limited), enrollment at the module, the duplicate review queue, print batches
and delivery. Thin: every route calls one service function, which checks the permission."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.access.schemas import AccountRead
from salud.api.credentials import TooManyRequests
from salud.api.deps import CurrentCaller, ReadSession, Session, caller_of
from salud.api.problems import problem
from salud.enrollment import booking, notify, printing, service
from salud.enrollment import reviews as duplicate_reviews
from salud.enrollment.biometrics import Matcher
from salud.enrollment.calendar import Phase
from salud.enrollment.schemas import (
    AppointmentRead,
    AvailabilityRead,
    BatchCardRead,
    BatchCreate,
    BatchRead,
    BatchStep,
    BookingIn,
    CalendarCreate,
    CalendarRead,
    DeliveryIn,
    DocumentsIn,
    DuplicateDecision,
    DuplicateReviewRead,
    EnrollmentCancel,
    EnrollmentRead,
    EnrollmentStart,
    ExceptionIn,
    FolioProof,
    ModuleCreate,
    ModuleRead,
    ModuleStatus,
    ModuleStatusChange,
    OpenEnrollmentRead,
    PhaseCreate,
    ReceiptRead,
    RescheduleIn,
    StaffAssign,
)
from salud.errors import InvalidInput
from salud.kit.clock import today_mx
from salud.kit.streams import read_at_most

router = APIRouter(prefix="/enrollment", tags=["credencialización"])
Code = Annotated[str, Path(pattern=r"^[A-Z0-9][A-Z0-9-]{2,19}$", description="Clave del módulo")]
Folio = Annotated[str, Path(pattern=r"^[A-Z0-9]{9,12}$", description="Folio")]
CredentialId = Annotated[str, Path(pattern=r"^[a-z2-7]{16}$", description="Identificador opaco")]
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/tiff")
IMAGE_BODY: dict[str, Any] = {"content": {t: {} for t in IMAGE_TYPES}}


def _x(permission: Permission | str, **extra: Any) -> dict[str, Any]:
    value = permission if isinstance(permission, str) else permission.value
    return {"x-permission": value, **extra}


MAX_IMAGE_BYTES = 2_000_000


async def _image_body(request: Request, caller: Caller, field: str, folio: str) -> bytes:
    """The uploaded image, read only after the permission is checked and never past 2 MB
    (the checks after it refuse anything over 1-2 MB anyway)."""
    await caller.allow(Permission.ENROLL, "enrollment:capture:upload", "enrollment",
                       subject_id=folio)  # fmt: skip
    data = await read_at_most(request.stream(), MAX_IMAGE_BYTES)
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput.on(field, "la imagen pesa más de 2 MB")
    return data


def issuance(request: Request) -> service.Issuance:
    state = request.app.state
    return service.Issuance(state.signer, state.keyring, state.credential_config)


def _matcher(request: Request) -> Matcher:
    found: Matcher = request.app.state.biometric_matcher
    return found


def booking_caller(request: Request, curp: str) -> Caller:
    """A signed-in caller books for whom their role allows; without a token, whoever knows a
    CURP books for it (as the government's booking site does), rate-limited per address and
    audited as `anonimo` acting for that CURP."""
    if request.headers.get("authorization"):
        return caller_of(request)
    host = request.client.host if request.client else "?"
    wait = request.app.state.booking_limiter.hit(host)
    if wait:
        raise TooManyRequests(wait, "solicitudes de cita")
    return Caller(booking.anonymous_principal(curp), request.app.state.audit, purpose="cita")


# --- modules --------------------------------------------------------------------------------


@router.get("/modules", summary="Módulos de registro", openapi_extra=_x("public"))
async def list_modules(
    session: ReadSession,
    state: Annotated[str | None, Query(pattern=r"^[0-3][0-9]$")] = None,
    module_status: Annotated[ModuleStatus | None, Query(alias="status")] = None,
) -> list[ModuleRead]:
    return await booking.list_modules(
        session, state, module_status.value if module_status else None
    )


@router.post(
    "/modules", status_code=status.HTTP_201_CREATED, summary="Dar de alta un módulo",
    openapi_extra=_x(Permission.MODULE_MANAGE),
)  # fmt: skip
async def create_module(body: ModuleCreate, session: Session, caller: CurrentCaller) -> ModuleRead:
    return await booking.create_module(session, body, caller)


@router.get("/modules/{code}", summary="Un módulo", openapi_extra=_x("public"))
async def get_module(code: Code, session: ReadSession) -> ModuleRead:
    return await booking.get_module(session, code)


@router.post(
    "/modules/{code}/status", summary="Abrir o cerrar el módulo",
    openapi_extra=_x(Permission.MODULE_MANAGE),
)  # fmt: skip
async def set_module_status(
    code: Code, body: ModuleStatusChange, session: Session, caller: CurrentCaller
) -> ModuleRead:
    return await booking.set_module_status(session, code, body.status, caller)


@router.post(
    "/modules/{code}/staff", summary="Asignar una cuenta de operador o supervisor al módulo",
    openapi_extra=_x(Permission.MODULE_MANAGE),
)  # fmt: skip
async def assign_staff(
    code: Code, body: StaffAssign, session: Session, caller: CurrentCaller
) -> list[AccountRead]:
    return await booking.assign_staff(session, code, body.username, caller)


@router.get(
    "/modules/{code}/staff", summary="Personal del módulo",
    openapi_extra=_x(Permission.MODULE_MANAGE),
)  # fmt: skip
async def module_staff(
    code: Code, session: ReadSession, caller: CurrentCaller
) -> list[AccountRead]:
    return await booking.staff(session, code, caller)


@router.get(
    "/modules/{code}/agenda", summary="Citas del día en el módulo",
    openapi_extra=_x(Permission.APPOINTMENT_READ),
)  # fmt: skip
async def agenda(
    code: Code, session: ReadSession, caller: CurrentCaller, day: date | None = None
) -> list[AppointmentRead]:
    return await booking.module_agenda(session, code, day or today_mx(), caller)


@router.get(
    "/modules/{code}/availability",
    summary="Días en que esta CURP puede acudir al módulo, con lugares libres",
    openapi_extra=_x("public"),
)
async def availability(
    code: Code,
    session: ReadSession,
    curp: Annotated[str, Query(min_length=18, max_length=18)],
    start: date | None = None,
    days: Annotated[int, Query(ge=1, le=90)] = 30,
) -> AvailabilityRead:
    return await booking.availability(session, code, curp.upper(), start, days)


# --- phases and calendars -------------------------------------------------------------------


@router.get("/phases", summary="Fases de la credencialización", openapi_extra=_x("public"))
async def phases(session: ReadSession) -> list[Phase]:
    return await booking.list_phases(session)


@router.post(
    "/phases", status_code=status.HTTP_201_CREATED, summary="Abrir una fase (estados y fechas)",
    openapi_extra=_x(Permission.CALENDAR_MANAGE),
)  # fmt: skip
async def create_phase(body: PhaseCreate, session: Session, caller: CurrentCaller) -> Phase:
    return await booking.create_phase(session, body, caller)


@router.get("/calendars", summary="Calendarios por letra y edad", openapi_extra=_x("public"))
async def calendars(session: ReadSession) -> list[CalendarRead]:
    return await booking.list_calendars(session)


@router.post(
    "/calendars", status_code=status.HTTP_201_CREATED, summary="Crear un calendario",
    openapi_extra=_x(Permission.CALENDAR_MANAGE),
)  # fmt: skip
async def create_calendar(
    body: CalendarCreate, session: Session, caller: CurrentCaller
) -> CalendarRead:
    return await booking.create_calendar(session, body, caller)


@router.post(
    "/calendars/{name}/activate", summary="Poner en vigor un calendario",
    openapi_extra=_x(Permission.CALENDAR_MANAGE),
)  # fmt: skip
async def activate_calendar(
    name: Annotated[str, Path(max_length=80)], session: Session, caller: CurrentCaller
) -> CalendarRead:
    return await booking.activate_calendar(session, name, caller)


# --- appointments ---------------------------------------------------------------------------


@router.post(
    "/appointments", status_code=status.HTTP_201_CREATED,
    summary="Agendar una cita (con sesión, o solo con la CURP: limitado por dirección)",
    openapi_extra=_x("public"),
)  # fmt: skip
async def book(body: BookingIn, request: Request, session: Session) -> AppointmentRead:
    return await booking.book(session, body, booking_caller(request, body.curp))


@router.get(
    "/me/appointment", summary="Mi cita vigente, con su folio (para cancelarla o cambiarla)",
    openapi_extra=_x(Permission.APPOINTMENT_BOOK),
)  # fmt: skip
async def my_appointment(session: ReadSession, caller: CurrentCaller) -> AppointmentRead:
    return await booking.my_appointment(session, caller)


@router.post(
    "/appointments/{folio}/cancel", summary="Cancelar una cita (se muestra la CURP)",
    openapi_extra=_x("public"),
)  # fmt: skip
async def cancel(
    folio: Folio, body: FolioProof, request: Request, session: Session
) -> AppointmentRead:
    return await booking.cancel(session, folio, body.curp, booking_caller(request, body.curp))


@router.post(
    "/appointments/{folio}/reschedule", status_code=status.HTTP_201_CREATED,
    summary="Cambiar una cita de día o de módulo (si no hay lugar, la cita original queda)",
    openapi_extra=_x("public"),
)  # fmt: skip
async def reschedule(
    folio: Folio, body: RescheduleIn, request: Request, session: Session
) -> AppointmentRead:
    return await booking.reschedule(session, folio, body, booking_caller(request, body.curp))


# --- enrollment -----------------------------------------------------------------------------


@router.post(
    "/enrollments", status_code=status.HTTP_201_CREATED,
    summary="Iniciar el registro de una persona en el módulo del operador (o retomar el que "
    "tiene en curso en ese módulo: 200)",
    responses={200: {"description": "Registro en curso en este módulo, retomado hoy",
                      "model": EnrollmentRead}},
    openapi_extra=_x(Permission.ENROLL),
)  # fmt: skip
async def start(
    body: EnrollmentStart, response: Response, session: Session, caller: CurrentCaller
) -> EnrollmentRead:
    started = await service.start_or_resume(session, body, caller)
    if started.resumed:
        response.status_code = status.HTTP_200_OK
    return started.enrollment


@router.get(
    "/enrollments", summary="Registros en curso en el módulo del operador (abiertos o en "
    "revisión, de cualquier día), con lo que les falta",
    openapi_extra=_x(Permission.ENROLL),
)  # fmt: skip
async def open_enrollments(session: ReadSession, caller: CurrentCaller) -> list[OpenEnrollmentRead]:
    return await service.open_enrollments(session, caller)


@router.get(
    "/enrollments/{folio}", summary="Un registro y lo que le falta",
    openapi_extra=_x(Permission.ENROLL),
)  # fmt: skip
async def get_enrollment(folio: Folio, session: Session, caller: CurrentCaller) -> EnrollmentRead:
    return await service.get(session, folio, caller)


@router.put(
    "/enrollments/{folio}/documents", summary="Documentos presentados (y tutor de un menor)",
    openapi_extra=_x(Permission.ENROLL),
)  # fmt: skip
async def documents(
    folio: Folio, body: DocumentsIn, session: Session, caller: CurrentCaller
) -> EnrollmentRead:
    return await service.set_documents(session, folio, body, caller)


@router.put(
    "/enrollments/{folio}/photo", summary="Fotografía (JPEG, PNG o WebP)",
    openapi_extra=_x(Permission.ENROLL, requestBody=IMAGE_BODY),
)  # fmt: skip
async def photo(
    folio: Folio, request: Request, session: Session, caller: CurrentCaller
) -> EnrollmentRead:
    raw = await _image_body(request, caller, "photo", folio)
    return await service.put_photo(session, request.app.state.keyring, folio, raw, caller)


@router.put(
    "/enrollments/{folio}/fingerprints/{finger}",
    summary="Huella de un dedo (imagen del lector, 500 ppi; posición ISO 1-10)",
    openapi_extra=_x(Permission.ENROLL, requestBody=IMAGE_BODY),
)
async def fingerprint(
    folio: Folio,
    finger: Annotated[int, Path(ge=1, le=10)],
    request: Request,
    session: Session,
    caller: CurrentCaller,
) -> EnrollmentRead:
    raw = await _image_body(request, caller, f"fingerprints.{finger}", folio)
    ring = request.app.state.keyring
    return await service.put_fingerprint(session, ring, folio, finger, raw, caller)


@router.post(
    "/enrollments/{folio}/exception", summary="Excepción aprobada por el supervisor",
    openapi_extra=_x(Permission.ENROLLMENT_APPROVE),
)  # fmt: skip
async def exception(
    folio: Folio, body: ExceptionIn, session: Session, caller: CurrentCaller
) -> EnrollmentRead:
    return await service.approve_exception(session, folio, body, caller)


@router.post(
    "/enrollments/{folio}/cancel",
    summary="Cancelar un registro abierto o en revisión (con el motivo; sus revisiones "
    "pendientes se cierran); la CURP puede iniciarse de nuevo",
    openapi_extra=_x(Permission.ENROLL),
)
async def cancel_enrollment(
    folio: Folio, body: EnrollmentCancel, session: Session, caller: CurrentCaller
) -> EnrollmentRead:
    return await service.cancel(session, folio, body, caller)


@router.post(
    "/enrollments/{folio}/complete",
    summary="Concluir: se expide la credencial (la digital funciona de inmediato)",
    response_model=ReceiptRead,
    openapi_extra=_x(Permission.ENROLL),
)
async def complete(
    folio: Folio, request: Request, session: Session, caller: CurrentCaller
) -> ReceiptRead | Response:
    done = await service.complete(session, issuance(request), _matcher(request), folio, caller)
    if isinstance(done, EnrollmentRead):  # held for review: committed, answered as a conflict
        detail = "las huellas coinciden con otra persona: pasa a revisión del supervisor"
        errors = [{"field": "fingerprints", "reason": "coincidencia biométrica"}]
        return problem(409, "Conflicto", detail, "conflict", errors, request.url.path)
    return done


@router.get(
    "/enrollments/{folio}/receipt", summary="Comprobante con la fecha de entrega",
    openapi_extra=_x(Permission.ENROLL),
)  # fmt: skip
async def receipt(
    folio: Folio, request: Request, session: Session, caller: CurrentCaller
) -> ReceiptRead:
    return await service.receipt(session, request.app.state.credential_config, folio, caller)


@router.get(
    "/reviews", summary="Cola de posibles duplicados",
    openapi_extra=_x(Permission.ENROLLMENT_APPROVE),
)  # fmt: skip
async def reviews(
    session: ReadSession,
    caller: CurrentCaller,
    review_status: Annotated[
        str | None, Query(alias="status", pattern="^(pending|distinct|duplicate|cancelled)$")
    ] = "pending",
) -> list[DuplicateReviewRead]:
    return await duplicate_reviews.list_reviews(session, caller, review_status)


@router.post(
    "/reviews/{review_id}", summary="Resolver un posible duplicado",
    openapi_extra=_x(Permission.ENROLLMENT_APPROVE),
)  # fmt: skip
async def decide(
    review_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: DuplicateDecision,
    session: Session,
    caller: CurrentCaller,
) -> DuplicateReviewRead:
    return await duplicate_reviews.decide_review(session, review_id, body, caller)


# --- printing and delivery ------------------------------------------------------------------


@router.post(
    "/print-batches", status_code=status.HTTP_201_CREATED,
    summary="Formar un lote con las tarjetas por imprimir de un módulo",
    openapi_extra=_x(Permission.CREDENTIAL_PRINT),
)  # fmt: skip
async def create_batch(body: BatchCreate, session: Session, caller: CurrentCaller) -> BatchRead:
    return await printing.create_batch(session, body, caller)


@router.get(
    "/print-batches", summary="Lotes (overdue=true: los atrasados)",
    openapi_extra=_x(Permission.CREDENTIAL_PRINT),
)  # fmt: skip
async def list_batches(
    session: ReadSession,
    caller: CurrentCaller,
    module: Annotated[str | None, Query(pattern=r"^[A-Z0-9][A-Z0-9-]{2,19}$")] = None,
    overdue: bool = False,
) -> list[BatchRead]:
    return await printing.list_batches(session, caller, module, overdue)


BatchCode = Annotated[str, Path(pattern=r"^L[0-9]{2}-[A-Z0-9]{8}$", description="Lote")]


@router.get(
    "/print-batches/{code}", summary="Un lote y sus tarjetas",
    openapi_extra=_x(Permission.CREDENTIAL_PRINT),
)  # fmt: skip
async def get_batch(code: BatchCode, session: Session, caller: CurrentCaller) -> BatchRead:
    return await printing.get_batch(session, code, caller)


@router.post(
    "/print-batches/{code}/print-file",
    summary="Archivo de impresión del lote (PDF); el lote queda impreso",
    response_class=Response,
    openapi_extra=_x(Permission.CREDENTIAL_PRINT),
)
async def batch_file(
    code: BatchCode, request: Request, session: Session, caller: CurrentCaller
) -> Response:
    pdf = await printing.print_file(session, issuance(request), code, caller)
    return Response(
        pdf, media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{code}.pdf"'},
    )  # fmt: skip


@router.post(
    "/print-batches/{code}/status", summary="Lote enviado o recibido en el módulo",
    openapi_extra=_x(Permission.CREDENTIAL_PRINT),
)  # fmt: skip
async def batch_step(
    code: BatchCode, body: BatchStep, session: Session, caller: CurrentCaller
) -> BatchRead:
    return await printing.advance(session, code, body.status, caller)


@router.post(
    "/cards/{credential_id}/delivery", summary="Entregar la tarjeta (verificada la identidad)",
    openapi_extra=_x(Permission.CREDENTIAL_PRINT),
)  # fmt: skip
async def deliver(
    credential_id: CredentialId, body: DeliveryIn, session: Session, caller: CurrentCaller
) -> BatchCardRead:
    return await printing.deliver(session, credential_id, body, caller)


@router.get(
    "/me/notifications", summary="Mis avisos (p. ej. «su tarjeta está lista»)",
    openapi_extra=_x(Permission.CREDENTIAL_READ),
)  # fmt: skip
async def my_notifications(
    session: ReadSession, caller: CurrentCaller
) -> list[notify.NotificationRead]:
    return await notify.mine(session, caller)
