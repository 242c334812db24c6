"""What the progress dashboard answers: counts only, never a person (see progress.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pydantic import BaseModel, Field


class AppointmentFigures(BaseModel):
    """Appointments at the modules of an area. Every booking counts once in `booked` (a
    reschedule is a cancellation plus a new booking), and
    booked = pending + kept + cancelled + no_show."""

    booked: int = 0
    pending: int = Field(default=0, description="agendadas para hoy o después")
    kept: int = Field(default=0, description="la persona acudió y se inició su registro")
    cancelled: int = 0
    no_show: int = Field(default=0, description="su día pasó sin que la persona acudiera")


class CardFigures(BaseModel):
    """Cards of persons enrolled at the modules of an area that have not reached their
    holder yet: issued (to print), printed (printed or on the way), ready for pickup."""

    to_print: int = 0
    printed: int = 0
    ready_for_pickup: int = 0
    waiting: int = Field(default=0, description="las tres juntas")
    overdue_batches: int = Field(
        default=0, description="lotes de impresión no recibidos en el módulo a su fecha"
    )


class AreaProgress(BaseModel):
    """Enrolled persons (by their registered address) against the INEGI 2020 population."""

    key: str = Field(description="clave INEGI: entidad (2) o municipio (3)")
    name: str
    population: int
    enrolled: int
    coverage_pct: float = Field(
        description="credencializadas / población × 100, con seis decimales"
    )


class StateProgress(AreaProgress):
    enrolled_without_municipality: int = Field(
        default=0,
        description="credencializadas con esta entidad en su domicilio pero sin municipio: "
        "cuentan en la entidad y en ningún municipio (las filas de los municipios más esta "
        "suman `enrolled`)",
    )
    appointments: AppointmentFigures
    cards: CardFigures


class ProgressRead(BaseModel):
    as_of: date
    computed_at: datetime = Field(
        description="cuándo se contaron estas cifras (una instantánea que el servidor toma "
        "cada pocos minutos, o en el momento)"
    )
    population_source: str
    national: StateProgress
    enrolled_without_address: int = Field(
        description="credencializadas sin entidad en su domicilio registrado (solo en el total)"
    )
    states: list[StateProgress]
    state: str | None = Field(default=None, description="la entidad elegida (?state=)")
    municipalities: list[AreaProgress] | None = None


@dataclass(frozen=True, slots=True)
class DayCount:
    """One module's completed enrollments on one day. A plain dataclass (pydantic validates and
    serializes it as a field): the national throughput has 2,900 modules x up to 90 days, and
    a model per day cost seconds to build."""

    day: date
    completed: int


class ModuleThroughput(BaseModel):
    code: str
    name: str
    state: str
    municipality: str | None
    status: str
    daily_capacity: int
    total: int
    days: list[DayCount]


class ThroughputRead(BaseModel):
    """Completed enrollments per module and day of the visit, for the last `days` days
    (today included); every day is present, with 0 when nobody was enrolled."""

    as_of: date
    computed_at: datetime = Field(description="cuándo se contaron estas cifras")
    start: date
    end: date
    days: int
    state: str | None
    modules: list[ModuleThroughput]
