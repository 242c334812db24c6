"""Tables of the credential: signing keys, credentials (one row per card issued) and the
history of each card's states."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
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

from salud.storage.base import Base, BigId, UTCDateTime

STATUSES = (
    "issued",
    "printed",
    "ready_for_pickup",
    "delivered",
    "suspended",
    "revoked",
    "superseded",
)
REASONS = ("first", "lost", "damaged", "renewal", "update", "reinstatement")
# A person has at most one current card: every earlier one is superseded or revoked.
_CURRENT = "status NOT IN ('revoked', 'superseded')"


class SigningKey(Base):
    """A key the credentials are signed with. The private half is sealed at rest (envelope
    encryption under the KEK); retired keys stay, so their cards keep verifying."""

    __tablename__ = "signing_keys"
    __table_args__ = (CheckConstraint("alg IN (-8, -7)", name="alg"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The kid's 8 bytes in hex, as `salud credentials keys` lists it (the JWKS and the COSE Key
    # Set publish the same bytes, base64url and raw).
    kid: Mapped[str] = mapped_column(String(32), unique=True)
    alg: Mapped[int] = mapped_column(SmallInteger)  # COSE: -8 EdDSA, -7 ES256
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    private_key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)  # retired at
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # compromised
    created_by: Mapped[str] = mapped_column(String(100))


class Credential(Base):
    """One card issued to a person (the plastic, and the digital card bound to it)."""

    __tablename__ = "credentials"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status"),
        CheckConstraint("reason IN (" + ", ".join(f"'{r}'" for r in REASONS) + ")", name="reason"),
        UniqueConstraint("person_curp", "sequence", name="uq_credentials_person_sequence"),
        Index(
            "uq_credentials_current_person",
            "person_curp",
            unique=True,
            sqlite_where=text(_CURRENT),
            postgresql_where=text(_CURRENT),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    credential_id: Mapped[str] = mapped_column(String(32), unique=True)  # opaque, base32
    person_curp: Mapped[str] = mapped_column(String(18))
    sequence: Mapped[int] = mapped_column(Integer)  # 1 for the first card, 2 after a loss…
    status: Mapped[str] = mapped_column(String(20))
    digital_active: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(20))
    kid: Mapped[str] = mapped_column(String(32))  # hex, as signing_keys.kid
    qr_text: Mapped[str] = mapped_column(String(4296))  # the plastic's signed QR, as printed
    link_code: Mapped[str] = mapped_column(String(16), unique=True)  # the second QR's link
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_by: Mapped[str] = mapped_column(String(100))
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_changed_by: Mapped[str] = mapped_column(String(100))
    superseded_by: Mapped[str | None] = mapped_column(String(32))


class CredentialEvent(Base):
    """Each state a card went through: who, when, why (never edited)."""

    __tablename__ = "credential_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    credential_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(300))
