"""Tables of the registry. The current person row plus a history of every earlier version
(a system-versioned table kept by the service, the same on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from salud.storage.base import Base, BigId, Json, UTCDateTime


class Person(Base):
    __tablename__ = "persons"
    __table_args__ = (
        Index("ix_persons_surname_birth", "first_surname_key", "birth_date"),
        CheckConstraint("sex IN ('H','M','X')", name="sex"),
        CheckConstraint("organ_donor IN ('yes','no','not_stated')", name="organ_donor"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    curp: Mapped[str] = mapped_column(String(18), unique=True)
    given_names: Mapped[str] = mapped_column(String(100))
    first_surname: Mapped[str] = mapped_column(String(100))
    second_surname: Mapped[str | None] = mapped_column(String(100))
    # Folded forms (no accents, uppercase) for search; derived, never shown.
    first_surname_key: Mapped[str] = mapped_column(String(100))
    given_names_key: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date] = mapped_column(Date)
    birth_state: Mapped[str] = mapped_column(String(2))
    sex: Mapped[str] = mapped_column(String(1))
    nationality: Mapped[str] = mapped_column(String(3))
    blood_type: Mapped[str] = mapped_column(String(7))
    organ_donor: Mapped[str] = mapped_column(String(10))
    organ_donor_date: Mapped[date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(254))
    address_state: Mapped[str | None] = mapped_column(String(2))
    address_municipality: Mapped[str | None] = mapped_column(String(3))
    address_locality: Mapped[str | None] = mapped_column(String(4))
    postal_code: Mapped[str | None] = mapped_column(String(5))
    street: Mapped[str | None] = mapped_column(String(200))
    photo_ref: Mapped[str | None] = mapped_column(String(200))
    assigned_clues: Mapped[str | None] = mapped_column(String(11))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(100))
    change_reason: Mapped[str | None] = mapped_column(String(300))

    affiliations: Mapped[list[Affiliation]] = relationship(
        back_populates="person",
        cascade="all, delete-orphan",
        order_by="Affiliation.id",
        lazy="raise",
    )


class Affiliation(Base):
    """Derechohabiencia: entitlement at an institution (DGIS AFILIACION catalog code)."""

    __tablename__ = "affiliations"
    __table_args__ = (CheckConstraint("status IN ('active','suspended','ended')", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("persons.id", ondelete="CASCADE"), index=True
    )
    institution_code: Mapped[int] = mapped_column(SmallInteger)
    member_number: Mapped[str | None] = mapped_column(String(30))
    regime: Mapped[str | None] = mapped_column(String(40))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10))

    person: Mapped[Person] = relationship(back_populates="affiliations", lazy="raise")


class PersonVersion(Base):
    """An earlier version of a person, frozen when it was replaced (never edited)."""

    __tablename__ = "person_versions"
    __table_args__ = (UniqueConstraint("person_id", "version", name="uq_person_versions_pv"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(BigId, ForeignKey("persons.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(Json)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(100))


class DataRequest(Base):
    """A data-protection request (derechos ARCO: acceso, rectificación, cancelación,
    oposición; LGPDPPSO arts. 43-56): filed by the person, answered within a legal term."""

    __tablename__ = "data_requests"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('access','rectification','cancellation','opposition')", name="kind"
        ),
        CheckConstraint("status IN ('received','granted','denied')", name="status"),
        Index("ix_data_requests_status_due", "status", "due_on"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    folio: Mapped[str] = mapped_column(String(24), unique=True)
    person_curp: Mapped[str] = mapped_column(String(18), index=True)
    kind: Mapped[str] = mapped_column(String(14))
    description: Mapped[str] = mapped_column(String(2000))
    requested_changes: Mapped[dict[str, Any] | None] = mapped_column(Json)
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    filed_by: Mapped[str] = mapped_column(String(100))
    due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10))
    answer: Mapped[str | None] = mapped_column(String(2000))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_by: Mapped[str | None] = mapped_column(String(100))
    resulting_version: Mapped[int | None] = mapped_column(Integer)


class PersonPhoto(Base):
    """The person's current photo (the one the card shows), sealed at rest (AES-GCM envelope,
    kit/sealing.py). A new photo bumps `version`; the one it replaces is kept, sealed as it
    was, in `person_photo_versions`."""

    __tablename__ = "person_photos"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_curp: Mapped[str] = mapped_column(String(18), unique=True)
    image_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(100))


class PersonPhotoVersion(Base):
    """An earlier photo, frozen (still sealed, bound to its CURP) when a new one replaced it:
    who took it and when, who replaced it and when. Never edited."""

    __tablename__ = "person_photo_versions"
    __table_args__ = (
        UniqueConstraint("person_curp", "version", name="uq_person_photo_versions_cv"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_curp: Mapped[str] = mapped_column(String(18))
    version: Mapped[int] = mapped_column(Integer)
    image_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    taken_by: Mapped[str] = mapped_column(String(100))
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime)
    replaced_by: Mapped[str] = mapped_column(String(100))


class Guardianship(Base):
    """A minor's mother, father or guardian, checked with their ID at a registration module
    (issue 6). Never edited nor deleted: a link that ends keeps its row with when, who and
    why, and a new link is a new row, so the rows are the relation's whole history. A link
    also lapses, without a write, when the minor turns 18 (`identity/guardians.py`)."""

    __tablename__ = "guardianships"
    __table_args__ = (
        CheckConstraint("relationship IN ('mother','father','guardian')", name="relationship"),
        CheckConstraint("minor_curp <> guardian_curp", name="not_self"),
        Index("ix_guardianships_minor", "minor_curp"),
        Index("ix_guardianships_guardian", "guardian_curp"),
        # One link in force per adult and minor, whatever runs at the same time: ending it
        # ends it (two concurrent links cannot leave a second one alive).
        Index(
            "uq_guardianships_active",
            "minor_curp",
            "guardian_curp",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    minor_curp: Mapped[str] = mapped_column(String(18), ForeignKey("persons.curp"))
    # The guardian need not be in the registry: their CURP and ID were checked at the module.
    guardian_curp: Mapped[str] = mapped_column(String(18))
    relationship: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(100))  # e.g. "registro R-2026-000123"
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    linked_by: Mapped[str] = mapped_column(String(100))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(100))
    end_reason: Mapped[str | None] = mapped_column(String(300))
