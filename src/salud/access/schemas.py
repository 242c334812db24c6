"""Shapes of accounts and sign-in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from salud.access.permissions import Role

Username = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9._-]{3,80}$")]


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    display_name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ]
    role: Role
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    institution_code: int | None = Field(None, ge=1, le=99, description="Clave DGIS")
    clues: Annotated[str | None, StringConstraints(pattern=r"^[A-Z]{5}\d{6}$")] = None
    module_code: Annotated[str | None, StringConstraints(max_length=20)] = None
    curp: Annotated[str | None, StringConstraints(pattern=r"^[A-Z0-9]{18}$")] = Field(
        None, description="Solo para cuentas de ciudadano: su propia CURP"
    )
    totp: bool = Field(True, description="Segundo factor TOTP (obligatorio para personal)")


class AccountRead(BaseModel):
    username: str
    display_name: str
    role: Role
    institution_code: int | None
    clues: str | None
    module_code: str | None
    active: bool
    totp_enabled: bool


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    totp: Annotated[str | None, StringConstraints(pattern=r"^\d{6}$")] = Field(
        None, description="Código de 6 dígitos de la aplicación autenticadora"
    )


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    role: Role


class Me(BaseModel):
    username: str
    role: Role
    permissions: list[str]
    institution_code: int | None
    clues: str | None


class AccessRead(BaseModel):
    """One entry of the audit log as people see it."""

    seq: int
    at: datetime
    actor: str
    role: str
    institution_code: int | None
    clues: str | None
    action: str
    purpose: str | None
    reason: str | None
    outcome: str
    person_curp: str | None


class AccessPage(BaseModel):
    items: list[AccessRead]
    next_before: int | None = Field(None, description="Pase este valor como before para seguir")


class CareCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["encounter", "appointment"] = "encounter"
    hours: int = Field(12, ge=1, le=72, description="Cuánto dura la relación de atención")


class CareRead(BaseModel):
    id: int
    curp: str
    clues: str
    kind: str
    valid_until: datetime
    created_by: str
    self_declared: bool = Field(
        description="La registró el propio personal clínico que consulta: la revisa un auditor"
    )
    review: str | None = None
    reviewed_by: str | None = None


class ConsentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_code: int = Field(ge=1, le=99, description="Clave DGIS de la institución")
    clues: Annotated[str | None, StringConstraints(pattern=r"^[A-Z]{5}\d{6}$")] = Field(
        None, description="Solo esa unidad; si se omite, toda la institución"
    )
    # With its zone (one without it was a 500), and in the future (a consent already over
    # was accepted).
    valid_until: AwareDatetime | None = None

    @field_validator("valid_until")
    @classmethod
    def _ahead(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("la fecha ya pasó: el consentimiento terminaría antes de empezar")
        return value


class ConsentRead(BaseModel):
    id: int
    institution_code: int
    clues: str | None
    granted_at: datetime
    valid_until: datetime | None
    revoked_at: datetime | None


class EmergencyOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=15, max_length=500)
    ] = Field(description="Por qué es una urgencia (queda en la bitácora y la ve la persona)")


class EmergencyRead(BaseModel):
    id: int
    curp: str
    actor: str
    clues: str | None
    reason: str
    opened_at: datetime
    expires_at: datetime
    review: str | None
    reviewed_by: str | None


class EmergencyReview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["justified", "unjustified"]
    note: Annotated[str | None, StringConstraints(max_length=500)] = None
