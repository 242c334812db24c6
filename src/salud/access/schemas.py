"""Shapes of accounts and sign-in, and of the audit log as people read it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from salud.access.permissions import Role
from salud.kit.text import search_key

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


# The purposes the system records itself: the basis a clinician's read had (care, consent,
# emergency: access/care.py), and those of its own paths (a guardian acting for a minor, an
# import, an administration command, each page's purpose). A client's X-Salud-Purpose may not
# claim one (api/deps.py): the person would read a receptionist's read as an emergency
# (FHIR ETREAT). A test finds every purpose the code sets and checks it is listed here.
SYSTEM_PURPOSES = frozenset({
    "care", "consent", "emergency", "tutor", "importacion", "administracion",
    "validacion publica", "unidades cercanas", "avance", "cita", "mis-datos", "arco", "avisos",
    "credencial-digital", "entrega", "impresion", "registro", "reposicion", "supervision",
    "verificacion",
})  # fmt: skip
# How the person's page words the three bases (web/privacy.PURPOSES): declared, they would
# read the same there.
_BASIS_WORDS = ("emergencia", "atención en la unidad", "con su consentimiento")
_SYSTEM_PURPOSE_KEYS = frozenset(search_key(p) for p in (*SYSTEM_PURPOSES, *_BASIS_WORDS))


def is_system_purpose(text: str) -> bool:
    """Whether a declared purpose reads as one the system records, in any case, with or
    without accents and punctuation («Emergency», «mis datos», «Emergencia»)."""
    return search_key(text) in _SYSTEM_PURPOSE_KEYS


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
    subject_type: str | None = Field(
        None, description="Qué se consultó o cambió (person, photo, Condition…)"
    )
    subject_id: str | None = Field(
        None, description="Cuál: el folio, la versión, el recurso (Condition/123)…"
    )
    detail: dict[str, Any] | None = Field(
        None,
        description="Lo que el servicio anotó (campos cambiados, permiso que faltó…); en la "
        "vista de la propia persona, solo lo que es de ella",
    )


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
        if value is None:
            return None
        try:  # 9999-12-31T23:59:59-06:00 is past the last instant UTC can hold (it was a 500)
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("la fecha está fuera del calendario que se puede guardar") from None
        if value <= datetime.now(UTC):
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
