"""Pydantic models in and out of credentialization (validation lives here)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from salud.enrollment.calendar import Phase, Rule, StateKey
from salud.enrollment.documents import Document, DocumentKind
from salud.identity.catalogs import inegi_municipality_keys
from salud.identity.schemas import PersonCreate, Relationship

Curp = Annotated[str, StringConstraints(min_length=18, max_length=18, to_upper=True)]
ModuleCode = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{2,19}$")]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ModuleCreate(_In):
    code: ModuleCode = Field(description="p. ej. MR-09-0001")
    name: str = Field(min_length=3, max_length=200)
    address: str = Field(min_length=5, max_length=300)
    state: StateKey
    municipality: str | None = Field(default=None, pattern=r"^[0-9]{3}$")
    latitude: float | None = Field(default=None, ge=14.0, le=33.5)
    longitude: float | None = Field(default=None, ge=-118.5, le=-86.0)
    weekdays: str = Field(default="123456", pattern=r"^[1-7]{1,7}$", description="ISO: 1=lunes")
    opens_at: ClockTime = "08:00"
    closes_at: ClockTime = "16:00"
    daily_capacity: int = Field(default=120, ge=1, le=5000)
    supervisor: str | None = Field(default=None, max_length=80)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(set(self.weekdays)) != len(self.weekdays):
            raise ValueError("weekdays: hay días repetidos")
        if self.closes_at <= self.opens_at:
            raise ValueError("closes_at: cierra antes de abrir")
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude: indique latitud y longitud juntas")
        # As the registry's Address checks it: a municipality of that state in INEGI's catalog.
        if self.municipality and self.state + self.municipality not in inegi_municipality_keys():
            raise ValueError(
                f"municipality: {self.municipality} no es un municipio INEGI "
                f"de la entidad {self.state}"
            )
        return self


class ModuleStatus(StrEnum):
    PLANNED = "planned"
    OPEN = "open"
    CLOSED = "closed"


# What the pages and the reasons say for each state (the UI speaks Spanish; the codes stay
# English). Every state has its words: tests/enrollment/test_status_words.py walks them all.
MODULE_STATUS_WORDS: dict[str, str] = {
    ModuleStatus.PLANNED: "por abrir", ModuleStatus.OPEN: "abierto",
    ModuleStatus.CLOSED: "cerrado",
}  # fmt: skip


class ModuleRead(BaseModel):
    code: str
    name: str
    address: str
    state: str
    municipality: str | None
    latitude: float | None
    longitude: float | None
    weekdays: str
    opens_at: str
    closes_at: str
    daily_capacity: int
    status: ModuleStatus
    supervisor: str | None
    opened_at: datetime | None
    opened_by: str | None


class ModuleStatusChange(_In):
    status: ModuleStatus


class StaffAssign(_In):
    username: str = Field(min_length=1, max_length=80)


class PhaseCreate(Phase):
    """A phase as the API receives it: the domain's Phase (fields and checks), stripped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CalendarCreate(_In):
    name: str = Field(min_length=1, max_length=80)
    rules: list[Rule] = Field(min_length=1, max_length=2000)
    active: bool = False


class CalendarRead(BaseModel):
    name: str
    active: bool
    rules: list[Rule]


class DayRead(BaseModel):
    day: date
    capacity: int
    booked: int
    free: int


class AvailabilityRead(BaseModel):
    module: ModuleRead
    letter: str
    days: list[DayRead]


class BookingIn(_In):
    curp: Curp
    module_code: ModuleCode
    day: date
    contact: str | None = Field(default=None, max_length=254, description="teléfono o correo")


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    KEPT = "kept"
    NO_SHOW = "no_show"


APPOINTMENT_STATUS_WORDS: dict[str, str] = {
    AppointmentStatus.BOOKED: "agendada", AppointmentStatus.CANCELLED: "cancelada",
    AppointmentStatus.KEPT: "atendida", AppointmentStatus.NO_SHOW: "no asistió",
}  # fmt: skip


class AppointmentRead(BaseModel):
    folio: str
    curp: str
    module_code: str
    module_name: str
    address: str
    day: date
    opens_at: str
    closes_at: str
    status: AppointmentStatus


class FolioProof(_In):
    """Who cancels or moves a booking made without signing in shows the CURP it was for."""

    curp: Curp


class RescheduleIn(_In):
    curp: Curp
    module_code: ModuleCode
    day: date


class EnrollmentStart(_In):
    curp: Curp
    appointment_folio: str | None = Field(default=None, max_length=12)
    person: PersonCreate | None = Field(
        default=None, description="datos de la persona, si aún no está en el padrón"
    )


class DocumentsIn(_In):
    documents: list[Document] = Field(max_length=10)
    guardian_curp: Curp | None = None
    guardian_relationship: Relationship | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        kinds = [d.kind for d in self.documents]
        if len(set(kinds)) != len(kinds):
            raise ValueError("documents: un documento aparece dos veces")
        if (self.guardian_curp is None) != (self.guardian_relationship is None):
            raise ValueError("guardian_relationship: indique la CURP y el parentesco juntos")
        return self


class ExceptionIn(_In):
    waive: list[DocumentKind] = Field(default_factory=list, max_length=5)
    waive_fingerprints: bool = False
    reason: str = Field(min_length=10, max_length=500)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.waive and not self.waive_fingerprints:
            raise ValueError("waive: indique qué se exceptúa")
        return self


class MissingRead(BaseModel):
    item: str  # a DocumentKind, "photo", "fingerprints", "guardian", "duplicate_review"
    label: str
    reason: str


class EnrollmentStatus(StrEnum):
    OPEN = "open"
    REVIEW = "review"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


ENROLLMENT_STATUS_WORDS: dict[str, str] = {
    EnrollmentStatus.OPEN: "abierto", EnrollmentStatus.REVIEW: "en revisión",
    EnrollmentStatus.COMPLETED: "concluido", EnrollmentStatus.CANCELLED: "cancelado",
}  # fmt: skip


class ReviewStatus(StrEnum):
    PENDING = "pending"
    DISTINCT = "distinct"
    DUPLICATE = "duplicate"
    CANCELLED = "cancelled"  # left undecided: its enrollment was cancelled


REVIEW_STATUS_WORDS: dict[str, str] = {
    ReviewStatus.PENDING: "pendiente", ReviewStatus.DISTINCT: "personas distintas",
    ReviewStatus.DUPLICATE: "la misma persona", ReviewStatus.CANCELLED: "cancelada",
}  # fmt: skip


def in_words(words: dict[str, str], status: str) -> str:
    """The Spanish words for a stored state (a state without them is a bug: KeyError)."""
    return words[status]


class ExceptionRead(BaseModel):
    """One exception a supervisor approved: who, when, why and what it excused."""

    by: str
    at: datetime | None = Field(description="UTC; vacío solo en excepciones anteriores a 0019")
    reason: str
    waived: list[str]


class EnrollmentRead(BaseModel):
    folio: str
    curp: str
    full_name: str
    birth_date: date
    minor: bool
    module_code: str
    operator: str
    status: EnrollmentStatus
    visit_day: date
    documents: list[Document]
    waived: list[str]
    exceptions: list[ExceptionRead] = Field(description="Todas las excepciones, la última al final")
    exception_reason: str | None = Field(description="El motivo de la última excepción")
    exception_by: str | None = Field(description="Quién aprobó la última excepción")
    guardian_curp: str | None
    guardian_relationship: Relationship | None
    has_photo: bool
    fingers: list[int]
    fingers_required: list[int]
    missing: list[MissingRead]
    credential_id: str | None
    pickup_from: date | None
    pickup_to: date | None
    started_at: datetime
    completed_at: datetime | None


class ReceiptRead(BaseModel):
    folio: str
    curp: str
    full_name: str
    module_code: str
    module_name: str
    module_address: str
    opens_at: str
    closes_at: str
    credential_id: str
    digital_card_url: str
    pickup_from: date
    pickup_to: date
    completed_at: datetime


class DuplicateReviewRead(BaseModel):
    id: int
    enrollment_folio: str
    person_curp: str
    candidate_curp: str
    reason: str
    status: ReviewStatus
    created_at: datetime
    decided_by: str | None
    note: str | None


class OpenEnrollmentRead(BaseModel):
    """An enrollment still under way at the module (open or in review), for the desk's list."""

    folio: str
    curp: str
    full_name: str
    status: EnrollmentStatus
    started_on: date = Field(description="Día en que se inició (hora de México)")
    visit_day: date
    missing: list[str] = Field(description="Lo que falta, en palabras")


class EnrollmentCancel(_In):
    reason: str = Field(min_length=10, max_length=300, description="Por qué se cancela")


class DuplicateDecision(_In):
    decision: Literal["distinct", "duplicate"]
    note: str | None = Field(default=None, max_length=500)


class BatchCreate(_In):
    module_code: ModuleCode
    limit: int = Field(default=500, ge=1, le=5000)


class BatchStatus(StrEnum):
    CREATED = "created"
    PRINTED = "printed"
    SHIPPED = "shipped"
    RECEIVED = "received"


# As the batch pages say them (templates/batch.html, batches.html).
BATCH_STATUS_WORDS: dict[str, str] = {
    BatchStatus.CREATED: "por imprimir", BatchStatus.PRINTED: "impreso",
    BatchStatus.SHIPPED: "enviado", BatchStatus.RECEIVED: "recibido",
}  # fmt: skip


class BatchCardRead(BaseModel):
    credential_id: str
    person_curp: str
    card_status: str
    delivered_at: datetime | None
    delivered_by: str | None
    delivered_to: str | None = Field(
        None, description="CURP de quien recibió: la persona, o la madre, padre o tutor de un menor"
    )
    deliverable: bool = Field(
        False, description="Está en el módulo y puede entregarse (lista para entrega, o impresa "
        "en un lote ya recibido: se suspendió en el camino y se reactivó)",
    )  # fmt: skip


class BatchRead(BaseModel):
    code: str
    module_code: str
    status: BatchStatus
    card_count: int
    due_on: date
    overdue: bool
    created_at: datetime
    printed_at: datetime | None
    shipped_at: datetime | None
    received_at: datetime | None
    cards: list[BatchCardRead] = Field(default_factory=list)


class BatchStep(_In):
    status: Literal["shipped", "received"]


class IdentityCheck(StrEnum):
    PHOTO_ID = "photo_id"  # the person's official ID
    FACE = "face"  # face compared with the photo on record (no ID at hand)
    GUARDIAN_ID = "guardian_id"  # a minor's card handed to the guardian


class DeliveryIn(_In):
    identity_check: IdentityCheck
    receiver_curp: Curp | None = Field(
        None,
        description="CURP de quien recibe: obligatoria para la credencial de un menor (su madre, "
        "padre o tutor vinculado en el padrón); si se indica para un adulto, es la suya",
    )
