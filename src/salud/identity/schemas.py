"""Pydantic shapes of the registry: what comes in (validated once) and what goes out."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal, Self

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from salud.identity import curp as curp_rules
from salud.identity.catalogs import (
    NON_INSTITUTION_CODES,
    affiliation_catalog,
    inegi_municipality_keys,
    inegi_state_keys,
)
from salud.kit.clock import today_mx
from salud.kit.text import search_key


class BloodType(StrEnum):
    O_POS = "O+"
    O_NEG = "O-"
    A_POS = "A+"
    A_NEG = "A-"
    B_POS = "B+"
    B_NEG = "B-"
    AB_POS = "AB+"
    AB_NEG = "AB-"
    UNKNOWN = "unknown"


class OrganDonor(StrEnum):
    YES = "yes"
    NO = "no"
    NOT_STATED = "not_stated"


class AffiliationStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ENDED = "ended"


class Sex(StrEnum):
    H = "H"
    M = "M"
    X = "X"


# Letters of any alphabet, spaces, apostrophes, hyphens and dots ("MA. DE LOURDES", "O'NEILL").
_NAME = re.compile(r"^[^\W\d_]+(?:[ '.\-][^\W\d_]*)*\.?$")
_PHONE = re.compile(r"^\+[1-9]\d{7,14}$")  # E.164
_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
)


# The width of the folded search keys (persons.given_names_key, first_surname_key).
NAME_KEY_LENGTH = 100


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("solo letras, espacios, apóstrofos, guiones y puntos")
    # Folding may lengthen a name: «ß» is «SS», one ligature (U+FDFA) is 18 letters. A name
    # whose search key would not fit its column is refused, not cut: no real name comes
    # near, and the column cannot hold the true bound (see docs/registry.md).
    folded = len(search_key(value))
    if folded > NAME_KEY_LENGTH:
        raise ValueError(
            f"normalizado para la búsqueda tendría {folded} letras (máximo {NAME_KEY_LENGTH})"
        )
    return value


@lru_cache(maxsize=8192)
def _curp_data(value: str) -> curp_rules.CurpData:
    """Validated once per model: the field check and the consistency check share it.
    (Only successes are cached; a CURP's validity cannot change but for the date limit,
    and a cached success is at most a day old.)"""
    return curp_rules.validate(value)


def _unpadded(value: object) -> object:
    """A CURP comes as it is written: a space around it is refused, never trimmed (curp.py is
    strict), so that " X" and "X" are not two keys of one person anywhere (a bulk file)."""
    if isinstance(value, str) and value != value.strip():
        raise ValueError("la CURP no lleva espacios")
    return value


def _curp(value: str) -> str:
    try:
        _curp_data(value)
    except curp_rules.CurpInvalid as exc:
        raise ValueError(exc.reason) from None
    return value


_ALPHA3 = frozenset(country.alpha_3 for country in pycountry.countries)


def _nationality(value: str) -> str:
    if value not in _ALPHA3:
        raise ValueError("no es un código de país ISO 3166-1 alfa-3 (p. ej. MEX)")
    return value


def _phone(value: str) -> str:
    if not _PHONE.match(value):
        raise ValueError("use formato internacional E.164, p. ej. +527711234567")
    return value


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("no es un correo electrónico válido")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_name),
]
Curp = Annotated[str, BeforeValidator(_unpadded), AfterValidator(_curp)]
Clues = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}[A-Z]{3}\d{6}$")]
Phone = Annotated[str, AfterValidator(_phone)]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
]
Nationality = Annotated[str, AfterValidator(_nationality)]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Annotated[str, StringConstraints(pattern=r"^\d{2}$")] = Field(
        description="Clave INEGI de la entidad (01–32)"
    )
    municipality: Annotated[str | None, StringConstraints(pattern=r"^\d{3}$")] = Field(
        None, description="Clave INEGI del municipio (3 dígitos)"
    )
    locality: Annotated[str | None, StringConstraints(pattern=r"^\d{4}$")] = Field(
        None, description="Clave INEGI de la localidad (4 dígitos)"
    )
    postal_code: Annotated[str | None, StringConstraints(pattern=r"^\d{5}$")] = None
    street: Annotated[str | None, StringConstraints(strip_whitespace=True, max_length=200)] = None

    @field_validator("state")
    @classmethod
    def _known_state(cls, value: str) -> str:
        if value not in inegi_state_keys() or value == "99":
            raise ValueError("no es una clave INEGI de entidad (01–32)")
        return value

    @model_validator(mode="after")
    def _known_municipality(self) -> Self:
        if self.locality and not self.municipality:
            raise ValueError("locality: la localidad requiere el municipio")
        if self.municipality and self.state + self.municipality not in inegi_municipality_keys():
            raise ValueError(
                f"municipality: {self.municipality} no es un municipio INEGI "
                f"de la entidad {self.state}"
            )
        return self


class AffiliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_code: int = Field(description="Clave DGIS del catálogo AFILIACION (2 = IMSS…)")
    member_number: Annotated[
        str | None, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9\-/]{1,30}$")
    ] = None
    regime: Annotated[str | None, StringConstraints(strip_whitespace=True, max_length=40)] = None
    valid_from: date
    valid_to: date | None = None
    status: AffiliationStatus = AffiliationStatus.ACTIVE

    @field_validator("institution_code")
    @classmethod
    def _known_institution(cls, value: int) -> int:
        entry = affiliation_catalog().get(value)
        if entry is None:
            raise ValueError("no existe en el catálogo DGIS de afiliación")
        if value in NON_INSTITUTION_CODES:
            raise ValueError(f"«{entry.short_name}» no es una institución")
        if not entry.active:
            raise ValueError(f"«{entry.short_name}» ya no está vigente en el catálogo DGIS")
        return value

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to es anterior a valid_from")
        return self


class AffiliationRead(AffiliationIn):
    institution: str = Field(description="Nombre corto de la institución")

    @field_validator("institution_code")
    @classmethod
    def _known_institution(cls, value: int) -> int:  # stored rows are not re-judged
        return value


def _check_affiliations(items: list[AffiliationIn]) -> list[AffiliationIn]:
    seen: set[tuple[int, str | None]] = set()
    for item in items:
        key = (item.institution_code, item.member_number)
        if key in seen:
            raise ValueError(f"afiliación repetida: institución {item.institution_code}")
        seen.add(key)
    return items


class _PersonFields(BaseModel):
    """Fields a person has besides the identity the CURP fixes."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    nationality: Nationality = "MEX"
    blood_type: BloodType = BloodType.UNKNOWN
    organ_donor: OrganDonor = OrganDonor.NOT_STATED
    organ_donor_date: date | None = Field(
        None, description="Fecha en que la persona expresó su decisión (obligatoria si sí/no)"
    )
    phone: Phone | None = None
    email: Email | None = None
    address: Address | None = None
    photo_ref: Annotated[str | None, StringConstraints(max_length=200)] = None
    assigned_clues: Clues | None = Field(None, description="CLUES de la unidad asignada")


def check_donor(organ_donor: OrganDonor | None, when: date | None, born: date | None) -> None:
    if organ_donor in (OrganDonor.YES, OrganDonor.NO) and when is None:
        raise ValueError("organ_donor_date: obligatoria cuando la decisión es sí o no")
    if organ_donor is OrganDonor.NOT_STATED and when is not None:
        raise ValueError("organ_donor_date: no aplica si la decisión no está expresada")
    if when is not None and when > today_mx():
        raise ValueError("organ_donor_date: está en el futuro")
    if when is not None and born is not None and when < born:
        raise ValueError(
            f"organ_donor_date: es anterior a la fecha de nacimiento ({born.isoformat()})"
        )


class PersonCreate(_PersonFields):
    curp: Curp
    given_names: Name
    first_surname: Name
    second_surname: Name | None = None
    birth_date: date | None = Field(None, description="Si se omite, se toma de la CURP")
    birth_state: str | None = Field(None, description="Código CURP de la entidad de nacimiento")
    sex: Sex | None = Field(None, description="H, M o X; si se omite, se toma de la CURP")
    affiliations: Annotated[list[AffiliationIn], AfterValidator(_check_affiliations)] = Field(
        default_factory=list, max_length=10
    )

    @model_validator(mode="after")
    def _consistent_with_curp(self) -> Self:
        data = _curp_data(self.curp)
        for field, encoded in (
            ("birth_date", data.birth_date),
            ("birth_state", data.state),
            ("sex", Sex(data.sex)),
        ):
            given = getattr(self, field)
            if given is None:
                setattr(self, field, encoded)
            elif str(given) != str(encoded):
                raise ValueError(f"{field}: no coincide con la CURP ({encoded})")
        mismatch = curp_rules.name_mismatch(  # the rest agrees with the CURP by now
            self.curp, self.given_names, self.first_surname, self.second_surname,
            data.birth_date, data.sex, data.state,
        )  # fmt: skip
        if mismatch is not None:
            raise ValueError(f"curp: {mismatch}")
        check_donor(self.organ_donor, self.organ_donor_date, data.birth_date)
        return self


class PersonUpdate(BaseModel):
    """A partial change: only the fields sent change. Identity (CURP) cannot change here."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    given_names: Name | None = None
    first_surname: Name | None = None
    second_surname: Name | None = None
    nationality: Nationality | None = None
    blood_type: BloodType | None = None
    organ_donor: OrganDonor | None = None
    organ_donor_date: date | None = None
    phone: Phone | None = None
    email: Email | None = None
    address: Address | None = None
    photo_ref: Annotated[str | None, StringConstraints(max_length=200)] = None
    assigned_clues: Clues | None = None
    affiliations: Annotated[list[AffiliationIn], AfterValidator(_check_affiliations)] | None = (
        Field(None, max_length=10, description="Si se envía, reemplaza la lista completa")
    )
    reason: Annotated[str | None, StringConstraints(max_length=300)] = Field(
        None, description="Motivo del cambio (queda en el historial)"
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not (self.model_fields_set - {"reason"}):
            raise ValueError("no hay cambios: envíe al menos un campo")
        for required in (
            "given_names",
            "first_surname",
            "nationality",
            "blood_type",
            "organ_donor",
        ):
            if required in self.model_fields_set and getattr(self, required) is None:
                raise ValueError(f"{required}: no puede quedar vacío")
        # The list is never null (a person without affiliations has []); null cleared
        # nothing and still made a version.
        if "affiliations" in self.model_fields_set and self.affiliations is None:
            raise ValueError("affiliations: envíe la lista completa ([] para quitarlas todas)")
        return self


class PersonRead(BaseModel):
    curp: str
    given_names: str
    first_surname: str
    second_surname: str | None
    birth_date: date
    birth_state: str
    sex: str
    nationality: str
    blood_type: str
    organ_donor: str
    organ_donor_date: date | None
    phone: str | None
    email: str | None
    address: Address | None
    photo_ref: str | None
    assigned_clues: str | None
    affiliations: list[AffiliationRead]
    version: int
    created_at: datetime
    updated_at: datetime


class Relationship(StrEnum):
    """Who answers for a minor (the ID checked at the module says which)."""

    MOTHER = "mother"
    FATHER = "father"
    GUARDIAN = "guardian"


class GuardianRead(BaseModel):
    guardian_curp: str
    relationship: Relationship
    source: str
    linked_at: datetime
    linked_by: str
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None
    active: bool = Field(description="Vigente hoy: sin terminar y la persona aún es menor de edad")


class WardRead(BaseModel):
    """A minor the signed-in person answers for (their own view)."""

    curp: str
    given_names: str
    first_surname: str
    second_surname: str | None
    birth_date: date
    relationship: Relationship


class GuardianLink(BaseModel):
    """Registry staff link an adult to a minor after checking the documents (a birth
    certificate, the adult's ID, a court ruling for a guardian)."""

    model_config = ConfigDict(extra="forbid")

    guardian_curp: Curp
    relationship: Relationship
    reason: str = Field(
        min_length=5, max_length=80, description="Documentos revisados (p. ej. acta de nacimiento)"
    )


class GuardianEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=5, max_length=300, description="Por qué termina el vínculo")


class PersonSummary(BaseModel):
    curp: str
    given_names: str
    first_surname: str
    second_surname: str | None
    birth_date: date
    birth_state: str
    sex: str
    address_state: str | None


class PersonPage(BaseModel):
    items: list[PersonSummary]
    limit: int
    next_cursor: str | None = Field(None, description="Pase este valor como cursor para seguir")


class FieldChange(BaseModel):
    field: str
    old: Any
    new: Any


class PersonVersionRead(BaseModel):
    version: int
    recorded_at: datetime
    recorded_by: str
    reason: str | None
    changes: list[FieldChange]


class DataRequestKind(StrEnum):
    ACCESS = "access"  # acceso
    RECTIFICATION = "rectification"  # rectificación
    CANCELLATION = "cancellation"  # cancelación
    OPPOSITION = "opposition"  # oposición


class DataRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: DataRequestKind
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=5, max_length=2000)
    ]
    requested_changes: PersonUpdate | None = Field(
        None, description="Para rectificación: los campos y sus valores correctos"
    )

    @model_validator(mode="after")
    def _changes_only_for_rectification(self) -> Self:
        if self.kind is DataRequestKind.RECTIFICATION and self.requested_changes is None:
            raise ValueError("requested_changes: indique qué datos deben corregirse")
        if self.kind is not DataRequestKind.RECTIFICATION and self.requested_changes:
            raise ValueError("requested_changes: solo aplica a una rectificación")
        return self


class DataRequestAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["granted", "denied"]
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=2000)]


class DataRequestRead(BaseModel):
    folio: str
    curp: str
    kind: str
    description: str
    requested_changes: dict[str, Any] | None
    filed_at: datetime
    due_on: date
    overdue: bool
    status: str
    answer: str | None
    answered_at: datetime | None
    resulting_version: int | None


class PhotoVersionRead(BaseModel):
    """One of the person's photos: the current one has no `replaced_at`."""

    version: int
    media_type: str
    width: int
    height: int
    taken_at: datetime
    taken_by: str
    replaced_at: datetime | None = None
    replaced_by: str | None = None
