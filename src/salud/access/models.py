"""Tables of access: accounts and the append-only, hash-chained audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from salud.storage.base import PARTITION_KEY_LENGTH, Base, BigId, Json, UTCDateTime


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(40))
    # Where the account acts: DGIS institution code, CLUES unit, registration module.
    institution_code: Mapped[int | None] = mapped_column(SmallInteger)
    clues: Mapped[str | None] = mapped_column(String(11))
    module_code: Mapped[str | None] = mapped_column(String(20))
    # A citizen account is bound to its person (CURP); staff accounts are not.
    curp: Mapped[str | None] = mapped_column(String(18), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # TOTP secret sealed with the key-encryption key (never stored in clear).
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The 30-second step of the last code accepted: a code is good once (RFC 6238 §5.2).
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    failed_attempts: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Revocation(Base):
    """Access ended before its tokens expire (`access/revocation.py`), read by every process
    every few seconds: a signed-out session (`sid`: every token of it, renewed ones
    included), or a subject (`account:{id}`, `client:{id}`) whose tokens issued up to
    `revoked_at` are void (disabled, a new second factor). Kept until the last token it
    voids would have expired."""

    __tablename__ = "revocations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(100))
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditEvent(Base):
    """One access or change of personal data. Never updated, never deleted: `seq` is
    contiguous and each row's `chain` is HMAC(key, previous chain || this entry), so an
    edited, removed or reordered row breaks the chain at that point (`salud audit verify`)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(40))
    institution_code: Mapped[int | None] = mapped_column(SmallInteger)
    clues: Mapped[str | None] = mapped_column(String(11))
    action: Mapped[str] = mapped_column(String(60))  # domain:subject:action
    subject_type: Mapped[str] = mapped_column(String(40))
    # The person concerned (CURP) when there is one: the "who looked at my data" key.
    # A CURP, or the id of a Patient kept outside the registry (the record's partition key).
    person_curp: Mapped[str | None] = mapped_column(String(PARTITION_KEY_LENGTH), index=True)
    subject_id: Mapped[str | None] = mapped_column(String(100))
    purpose: Mapped[str | None] = mapped_column(String(60))
    reason: Mapped[str | None] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(20))  # success | denied | not_found | error
    detail: Mapped[dict[str, Any] | None] = mapped_column(Json)
    chain: Mapped[str] = mapped_column(String(64))


class ApiClient(Base):
    """An institution's system (hospital information system, lab) that calls the API with
    OAuth2 client credentials (RFC 6749 §4.4), limited to the scopes it was granted."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    institution_code: Mapped[int | None] = mapped_column(SmallInteger)
    clues: Mapped[str | None] = mapped_column(String(11))
    secret_hash: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(String(1000))  # space-separated, as granted
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CareRelationship(Base):
    """The person is being cared for at a unit (an open encounter or an appointment): its
    clinicians may read the person's data while it lasts."""

    __tablename__ = "care_relationships"
    __table_args__ = (Index("ix_care_relationships_person_clues", "person_curp", "clues"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_curp: Mapped[str] = mapped_column(String(18))
    clues: Mapped[str] = mapped_column(String(11))
    kind: Mapped[str] = mapped_column(String(20))  # encounter | appointment
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    # Recorded by the clinician who then reads on it (not by reception at the person's
    # arrival): a basis they gave themselves, so an auditor reviews it, as a broken glass.
    self_declared: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    review: Mapped[str | None] = mapped_column(String(20))  # justified | unjustified
    review_note: Mapped[str | None] = mapped_column(String(500))


class Consent(Base):
    """The person lets an institution (or one unit of it) read their data."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_person", "person_curp"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_curp: Mapped[str] = mapped_column(String(18))
    institution_code: Mapped[int] = mapped_column(SmallInteger)
    clues: Mapped[str | None] = mapped_column(String(11))  # None: every unit of it
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EmergencyAccess(Base):
    """Break-the-glass: a clinician opened a record without a care relationship or consent,
    stating why. Time-limited, reviewed by an auditor, shown to the person."""

    __tablename__ = "emergency_accesses"
    __table_args__ = (Index("ix_emergency_accesses_person_actor", "person_curp", "actor"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_curp: Mapped[str] = mapped_column(String(18))
    actor: Mapped[str] = mapped_column(String(100))
    clues: Mapped[str | None] = mapped_column(String(11))
    reason: Mapped[str] = mapped_column(String(500))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    review: Mapped[str | None] = mapped_column(String(20))  # justified | unjustified
    review_note: Mapped[str | None] = mapped_column(String(500))
