"""The signed payload of the card's QR: a CWT (RFC 8392) carrying MOSIP Claim 169 v1.2.1.

Layout (shared/specs/credential-qr.md):
- standard claims: 1 iss, 4 exp, 5 nbf, 6 iat;
- claim 169 (identity): 1 ID (CURP), 3 language `spa`, 4 full name, 5 given names,
  7 surnames, 8 birth date YYYYMMDD, 9 gender (1 H, 2 M, 3 X), 13 nationality,
  23 country of issuance `MX`, 62 face (when configured);
- private claim -65537 (ours only, below -65536 as RFC 8392 §9.1 reserves): 1 blood type,
  2 organ-donation decision (1 yes, 0 no, 2 not stated), 3 credential id (bytes),
  4 card sequence, 5 kind (1 plastic card, 2 digital card) and, on the digital card only,
  6 the entitlement statement {1 as of (epoch s), 2 institution codes (DGIS), 3 CLUES}.

Pure functions and dataclasses, no database code: the offline verifier imports this."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Any

import cbor2

CLAIM_169 = 169
PRIVATE_CLAIM = -65537
ISS, SUB, EXP, NBF, IAT = 1, 2, 4, 5, 6

_GENDER = {"H": 1, "M": 2, "X": 3}
_SEX = {v: k for k, v in _GENDER.items()}
_DONOR = {"yes": 1, "no": 0, "not_stated": 2}
_DONOR_OF = {v: k for k, v in _DONOR.items()}
FACE_FORMATS = {"png": 0, "jpeg": 1, "webp": 4}
BLOOD_TYPES = frozenset({"A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-", "unknown"})


class CardKind(IntEnum):
    PLASTIC = 1
    DIGITAL = 2


class MalformedClaims(ValueError):
    """The CWT decoded but its claims are not a credential of ours."""


@dataclass(frozen=True, slots=True)
class Holder:
    curp: str
    given_names: str
    surnames: str  # both surnames, as Claim 169 field 7 carries them
    birth_date: date
    sex: str  # H, M, X (CURP)
    nationality: str  # ISO 3166
    blood_type: str
    organ_donor: str  # yes | no | not_stated

    @property
    def full_name(self) -> str:
        return f"{self.given_names} {self.surnames}"


@dataclass(frozen=True, slots=True)
class Entitlement:
    """The digital card's signed statement: entitled at these institutions as of `as_of`."""

    as_of: datetime
    institutions: tuple[int, ...]  # DGIS affiliation codes
    assigned_clues: str | None


@dataclass(frozen=True, slots=True)
class CardClaims:
    issuer: str
    holder: Holder
    credential_id: bytes
    sequence: int
    kind: CardKind
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    face: bytes | None = None
    face_format: str | None = None  # png | jpeg | webp
    entitlement: Entitlement | None = None


def credential_id_text(raw: bytes) -> str:
    """The opaque credential id as printed and used in URLs (base32, lowercase)."""
    return base64.b32encode(raw).decode().rstrip("=").lower()


def credential_id_bytes(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except ValueError:
        raise ValueError("no es un identificador de credencial") from None


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _moment(value: Any, name: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedClaims(f"{name}: no es una fecha (segundos desde 1970)")
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedClaims(f"{name}: fecha fuera de rango") from None


def to_cbor(claims: CardClaims) -> bytes:
    """The CWT claims set as CBOR (RFC 8949 core deterministic encoding)."""
    h = claims.holder
    identity: dict[int, Any] = {
        1: h.curp,
        3: "spa",
        4: h.full_name,
        5: h.given_names,
        7: h.surnames,
        8: h.birth_date.strftime("%Y%m%d"),
        9: _GENDER[h.sex],
        13: h.nationality,
        23: "MX",
    }
    if claims.face is not None:
        identity[62] = [{0: claims.face, 1: 0, 2: FACE_FORMATS[claims.face_format or "webp"]}]
    ours: dict[int, Any] = {
        1: h.blood_type,
        2: _DONOR[h.organ_donor],
        3: claims.credential_id,
        4: claims.sequence,
        5: int(claims.kind),
    }
    if claims.entitlement is not None:
        e = claims.entitlement
        statement: dict[int, Any] = {1: _epoch(e.as_of), 2: list(e.institutions)}
        if e.assigned_clues:
            statement[3] = e.assigned_clues
        ours[6] = statement
    cwt = {
        ISS: claims.issuer,
        EXP: _epoch(claims.expires_at),
        NBF: _epoch(claims.not_before),
        IAT: _epoch(claims.issued_at),
        CLAIM_169: identity,
        PRIVATE_CLAIM: ours,
    }
    return cbor2.dumps(cwt, canonical=True)


def _text(m: dict[Any, Any], key: int, name: str, *, required: bool = True) -> str | None:
    value = m.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedClaims(f"{name}: falta o no es texto")
    return value


def from_map(cwt: Any) -> CardClaims:
    """Claims from a decoded CWT map; MalformedClaims names what is wrong."""
    if not isinstance(cwt, dict):
        raise MalformedClaims("la carga no es un mapa de claims CWT")
    identity, ours = cwt.get(CLAIM_169), cwt.get(PRIVATE_CLAIM)
    if not isinstance(identity, dict):
        raise MalformedClaims("falta el claim 169 (identidad)")
    if not isinstance(ours, dict):
        raise MalformedClaims(f"falta el claim privado {PRIVATE_CLAIM}")
    birth_text = str(_text(identity, 8, "fecha de nacimiento (8)"))
    try:
        if len(birth_text) != 8 or not birth_text.isdigit():
            raise ValueError
        birth = date(int(birth_text[:4]), int(birth_text[4:6]), int(birth_text[6:]))
    except ValueError:
        raise MalformedClaims("fecha de nacimiento (8): no es AAAAMMDD") from None
    sex = _SEX.get(identity.get(9))  # type: ignore[arg-type]
    donor = _DONOR_OF.get(ours.get(2))  # type: ignore[arg-type]
    blood = _text(ours, 1, "grupo sanguíneo")
    cred, seq, kind = ours.get(3), ours.get(4), ours.get(5)
    if sex is None:
        raise MalformedClaims("sexo (9): debe ser 1, 2 o 3")
    if donor is None:
        raise MalformedClaims("decisión de donación: debe ser 0, 1 o 2")
    if blood not in BLOOD_TYPES:
        raise MalformedClaims("grupo sanguíneo: valor desconocido")
    if not isinstance(cred, bytes) or not 8 <= len(cred) <= 32:
        raise MalformedClaims("identificador de credencial: faltan los bytes")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise MalformedClaims("número de tarjeta: debe ser un entero positivo")
    if kind not in (1, 2):
        raise MalformedClaims("tipo de credencial: debe ser 1 (plástico) o 2 (digital)")
    face, face_format = _face(identity.get(62))
    issuer = cwt.get(ISS)
    if not isinstance(issuer, str) or not issuer:
        raise MalformedClaims("emisor (iss): falta")
    holder = Holder(
        curp=str(_text(identity, 1, "CURP (1)")),
        given_names=str(_text(identity, 5, "nombres (5)")),
        surnames=str(_text(identity, 7, "apellidos (7)")),
        birth_date=birth,
        sex=sex,
        nationality=str(_text(identity, 13, "nacionalidad (13)")),
        blood_type=str(blood),
        organ_donor=donor,
    )
    return CardClaims(
        issuer=issuer,
        holder=holder,
        credential_id=cred,
        sequence=seq,
        kind=CardKind(kind),
        issued_at=_moment(cwt.get(IAT), "iat"),
        not_before=_moment(cwt.get(NBF), "nbf"),
        expires_at=_moment(cwt.get(EXP), "exp"),
        face=face,
        face_format=face_format,
        entitlement=_entitlement(ours.get(6)),
    )


def _face(value: Any) -> tuple[bytes | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, list) or not value or not isinstance(value[0], dict):
        raise MalformedClaims("rostro (62): debe ser una lista de mapas biométricos")
    data, fmt = value[0].get(0), value[0].get(2)
    names = {v: k for k, v in FACE_FORMATS.items()}
    if not isinstance(data, bytes) or fmt not in names:
        raise MalformedClaims("rostro (62): datos o formato inválidos")
    return data, names[fmt]


def _entitlement(value: Any) -> Entitlement | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedClaims("declaración de derechohabiencia: no es un mapa")
    codes = value.get(2)
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in codes
    ):
        raise MalformedClaims("declaración de derechohabiencia: instituciones inválidas")
    clues = value.get(3)
    if clues is not None and not isinstance(clues, str):
        raise MalformedClaims("declaración de derechohabiencia: CLUES inválida")
    return Entitlement(_moment(value.get(1), "vigente al"), tuple(codes), clues)
