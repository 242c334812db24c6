"""Tables of credentialization: modules and their days, phases and calendars, appointments,
enrollments with their documents, fingerprints, the duplicate review queue, print batches and
the notification outbox.

Capacity is a counter row per module and day (`module_days`): a booking is one conditional
`UPDATE … SET booked = booked + 1 WHERE booked < capacity`, and a CHECK constraint keeps
`booked <= capacity` even if the code were wrong, so two people can never take the last slot."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from salud.storage.base import Base, BigId, Json, UTCDateTime


class RegistrationModule(Base):
    """Módulo de registro: where people are enrolled."""

    __tablename__ = "registration_modules"
    __table_args__ = (
        CheckConstraint("status IN ('planned','open','closed')", name="status"),
        CheckConstraint("daily_capacity > 0", name="capacity_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(2), index=True)  # INEGI key
    municipality: Mapped[str | None] = mapped_column(String(3))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    weekdays: Mapped[str] = mapped_column(String(7))  # ISO weekdays: "123456" = Mon-Sat
    opens_at: Mapped[str] = mapped_column(String(5))  # "08:00"
    closes_at: Mapped[str] = mapped_column(String(5))
    daily_capacity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(8))
    supervisor: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_by: Mapped[str | None] = mapped_column(String(100))


class ModuleDay(Base):
    """Places on one day at one module. Created the first time someone books that day."""

    __tablename__ = "module_days"
    __table_args__ = (
        UniqueConstraint("module_id", "day", name="uq_module_days_module_day"),
        CheckConstraint("booked >= 0 AND booked <= capacity", name="within_capacity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    module_id: Mapped[int] = mapped_column(BigId, ForeignKey("registration_modules.id"))
    day: Mapped[date] = mapped_column(Date)
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer)


class EnrollmentPhase(Base):
    """A phase of the drive: the states (or municipalities) it opens, from a day (and until)."""

    __tablename__ = "enrollment_phases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    states: Mapped[list[str]] = mapped_column(Json)
    municipalities: Mapped[list[str]] = mapped_column(Json)  # "13048": regions within a state
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class EnrollmentCalendar(Base):
    """A calendar (rules by surname letter and age group). One is active at a time."""

    __tablename__ = "enrollment_calendars"
    __table_args__ = (
        Index(
            "uq_enrollment_calendars_active",
            "active",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    active: Mapped[bool] = mapped_column(Boolean)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class Appointment(Base):
    """Cita: a person's place at a module on a day. One booked appointment per person."""

    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint("status IN ('booked','cancelled','kept','no_show')", name="status"),
        Index(
            "uq_appointments_booked_person",
            "person_curp",
            unique=True,
            sqlite_where=text("status = 'booked'"),
            postgresql_where=text("status = 'booked'"),
        ),
        Index("ix_appointments_module_day", "module_id", "day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    folio: Mapped[str] = mapped_column(String(12), unique=True)
    person_curp: Mapped[str] = mapped_column(String(18), index=True)
    module_id: Mapped[int] = mapped_column(BigId, ForeignKey("registration_modules.id"))
    day: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10))
    contact: Mapped[str | None] = mapped_column(String(254))
    booked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    booked_by: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Enrollment(Base):
    """Credencialización: one visit that ends with the person's first card.

    A person has at most one enrollment that is not cancelled (so the same CURP can never be
    enrolled twice), enforced by a partial unique index."""

    __tablename__ = "enrollments"
    __table_args__ = (
        CheckConstraint("status IN ('open','review','completed','cancelled')", name="status"),
        Index(
            "uq_enrollments_person",
            "person_curp",
            unique=True,
            sqlite_where=text("status <> 'cancelled'"),
            postgresql_where=text("status <> 'cancelled'"),
        ),
        Index("ix_enrollments_module_completed", "module_id", "completed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    folio: Mapped[str] = mapped_column(String(14), unique=True)
    person_curp: Mapped[str] = mapped_column(String(18))
    module_id: Mapped[int] = mapped_column(BigId, ForeignKey("registration_modules.id"))
    appointment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("appointments.id"))
    operator: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10))
    visit_day: Mapped[date] = mapped_column(Date)
    documents: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    waived: Mapped[list[str]] = mapped_column(Json)  # documents a supervisor excused
    # Every exception a supervisor approved, oldest first: {"by", "at" (ISO UTC), "reason",
    # "waived"}; `waived` above is their union (what the checklist reads).
    # (Empty by default: a row written without it, as bench/progress.py writes them, has none.)
    exceptions: Mapped[list[dict[str, Any]]] = mapped_column(Json, server_default=text("'[]'"))
    guardian_curp: Mapped[str | None] = mapped_column(String(18))
    guardian_relationship: Mapped[str | None] = mapped_column(String(10))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    credential_id: Mapped[str | None] = mapped_column(String(32))
    pickup_from: Mapped[date | None] = mapped_column(Date)
    pickup_to: Mapped[date | None] = mapped_column(Date)
    # The version of the person's photo taken through this enrollment (None: none yet). Only
    # that one counts: a photo put through the registry's API, even during the visit, does
    # not (the card would show a photo this module never took).
    photo_version: Mapped[int | None] = mapped_column(Integer)


class Fingerprint(Base):
    """A fingerprint image from the module's scanner, sealed at rest (AES-GCM envelope)."""

    __tablename__ = "fingerprints"
    __table_args__ = (
        UniqueConstraint("person_curp", "finger", name="uq_fingerprints_person_finger"),
        CheckConstraint("finger BETWEEN 1 AND 10", name="finger"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_curp: Mapped[str] = mapped_column(String(18), index=True)
    finger: Mapped[int] = mapped_column(SmallInteger)  # ISO/IEC 19794-2 position 1..10
    image_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    quality: Mapped[int] = mapped_column(SmallInteger)  # 0-100, see biometrics.py
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    captured_by: Mapped[str] = mapped_column(String(100))


class DuplicateReview(Base):
    """A probable duplicate (same names, birth date and state, another CURP) for a supervisor.
    `cancelled`: left undecided because its enrollment was cancelled (by hand, abandoned, or
    another review of it found the duplicate)."""

    __tablename__ = "duplicate_reviews"
    __table_args__ = (
        CheckConstraint("status IN ('pending','distinct','duplicate','cancelled')", name="status"),
        Index("ix_duplicate_reviews_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    enrollment_id: Mapped[int] = mapped_column(BigId, ForeignKey("enrollments.id"), index=True)
    person_curp: Mapped[str] = mapped_column(String(18))
    candidate_curp: Mapped[str] = mapped_column(String(18))
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(String(500))


class PrintBatch(Base):
    """Lote de impresión: the cards of one module printed together and shipped to it."""

    __tablename__ = "print_batches"
    __table_args__ = (
        CheckConstraint("status IN ('created','printed','shipped','received')", name="status"),
        Index("ix_print_batches_module_status", "module_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    module_id: Mapped[int] = mapped_column(BigId, ForeignKey("registration_modules.id"))
    status: Mapped[str] = mapped_column(String(8))
    card_count: Mapped[int] = mapped_column(Integer)
    due_on: Mapped[date] = mapped_column(Date)  # received at the module by this day
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    printed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_by: Mapped[str | None] = mapped_column(String(100))


class PrintBatchCard(Base):
    """A card in a batch. A card is printed once: `credential_id` is unique."""

    __tablename__ = "print_batch_cards"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("print_batches.id"), index=True)
    credential_id: Mapped[str] = mapped_column(String(32), unique=True)
    person_curp: Mapped[str] = mapped_column(String(18))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_by: Mapped[str | None] = mapped_column(String(100))
    identity_check: Mapped[str | None] = mapped_column(String(40))
    # Who took the card: the holder, or for a minor the linked mother, father or guardian.
    delivered_to: Mapped[str | None] = mapped_column(String(18))


class Notification(Base):
    """Outbox of messages to people (card ready for pickup…). A sender drains it; in
    development the sender is the log (see enrollment/notify.py)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_unsent", "sent_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_curp: Mapped[str] = mapped_column(String(18), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    message: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ProgressSnapshot(Base):
    """The progress dashboard's figures as of `taken_at` (counts only, never a person).

    Counting every enrollment against the registry takes minutes at the national scale, so the
    server takes a snapshot in the background every few minutes (progress.refresh) and the
    dashboard reads the latest one instead of counting on every request."""

    __tablename__ = "progress_snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    figures: Mapped[dict[str, Any]] = mapped_column(Json)
