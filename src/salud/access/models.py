"""Tables of access: accounts and the append-only, hash-chained audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from salud.storage.base import Base, BigId, Json, UTCDateTime


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
    failed_attempts: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


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
    person_curp: Mapped[str | None] = mapped_column(String(18), index=True)
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
