"""Pydantic shapes of the credential API."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class IssueReason(StrEnum):
    FIRST = "first"
    LOST = "lost"
    DAMAGED = "damaged"
    RENEWAL = "renewal"
    UPDATE = "update"  # the printed data changed (name, blood type, donor decision…)
    # A supervisor's new card after a revocation (one made by mistake): the revoked card stays
    # revoked; the why is mandatory (`IssueRequest.note`) and goes to the card's history and
    # the audit log.
    REINSTATEMENT = "reinstatement"


class Status(StrEnum):
    ISSUED = "issued"
    PRINTED = "printed"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: IssueReason = IssueReason.FIRST
    note: str | None = Field(
        default=None, max_length=300,
        description="Por qué (obligatorio con reinstatement; queda en el historial y la auditoría)",
    )  # fmt: skip


class StatusChange(BaseModel):
    """A supervisor's change of a card's standing (the public API's). The plastic's way to
    the holder (printed, ready_for_pickup, delivered) is not here: only the print batches and
    the delivery at the module move it (`PlasticStep`), with their checks."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    status: Literal["suspended", "active", "revoked"]
    note: str | None = Field(default=None, max_length=300)


# The plastic's steps, set only by enrollment/printing.py (batch printed, batch received at
# the module, card handed over after the identity check); never taken from a request.
PlasticStep = Literal["printed", "ready_for_pickup", "delivered"]


class CredentialRead(BaseModel):
    credential_id: str
    person_curp: str
    sequence: int
    status: Status
    digital_active: bool
    reason: IssueReason
    issued_at: datetime
    expires_at: datetime
    status_changed_at: datetime
    superseded_by: str | None
    qr_version: int | None = Field(default=None, description="Versión del código QR firmado")


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    qr: str = Field(min_length=1, max_length=4296, description="Texto leído del código QR")


class HolderRead(BaseModel):
    curp: str
    given_names: str
    surnames: str
    birth_date: date
    sex: str
    nationality: str
    blood_type: str
    organ_donor: str


class EntitlementRead(BaseModel):
    institution_code: int
    institution: str
    valid_to: date | None


Verdict = Literal["valid", "valid_as_of", "invalid"]
CardState = Literal["current", "suspended", "revoked", "superseded", "unknown"]


class ValidationRead(BaseModel):
    """The reception desk's answer: verdict, photo and identity for the face-to-face check,
    live entitlement and whether this card is the person's current one."""

    verdict: Verdict
    reason: str | None = Field(description="Motivo del rechazo (código)")
    message: str
    card: CardState | None
    kind: Literal["plastic", "digital"] | None
    credential_id: str | None
    sequence: int | None
    expires_at: datetime | None
    statement_as_of: datetime | None
    holder: HolderRead | None
    photo: str | None = Field(description="Fotografía como data: URL, para cotejar")
    entitlements: list[EntitlementRead]
    assigned_clues: str | None
    outdated: list[str] = Field(
        default_factory=list,
        description="Datos que la tarjeta muestra y que el padrón ya cambió (given_names, "
        "surnames, birth_date, sex, nationality, blood_type, organ_donor): reponerla con "
        "motivo update",
    )


class PublicValidationRead(BaseModel):
    """Anyone's answer: valid or not, and whether the card is current. Nothing personal."""

    verdict: Verdict
    reason: str | None
    message: str
    card: Literal["current", "not_current", "unknown"] | None


class DigitalCardRead(BaseModel):
    credential_id: str
    sequence: int
    qr: str = Field(description="Texto del QR firmado (con declaración de derechohabiencia)")
    qr_svg: str = Field(description="El mismo QR como SVG")
    statement_as_of: datetime
    expires_at: datetime
    holder: HolderRead
    entitlements: list[EntitlementRead]
    assigned_clues: str | None
    link: str
    plastic_outdated: list[str] = Field(
        default_factory=list,
        description="Datos que la tarjeta impresa muestra y que el padrón ya cambió: la "
        "credencial digital muestra los de ahora; la impresa se repone con motivo update",
    )
