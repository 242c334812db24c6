"""The document checklist at the module. Pure logic, no database.

Adults show an official photo ID, a certified CURP and a proof of address dated no more than
six months before the visit. Minors (under 18 on the day of the visit) show their birth
certificate, their CURP and the photo ID of their mother, father or guardian. A missing or
stale document blocks the enrollment with the reason; a supervisor may waive a document with
a recorded exception."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from salud.kit.ages import is_minor

ADDRESS_PROOF_MONTHS = 6


class DocumentKind(StrEnum):
    PHOTO_ID = "photo_id"  # identificación oficial con fotografía
    CURP = "curp"  # CURP certificada
    ADDRESS_PROOF = "address_proof"  # comprobante de domicilio
    BIRTH_CERTIFICATE = "birth_certificate"  # acta de nacimiento
    GUARDIAN_ID = "guardian_id"  # identificación de la madre, el padre o quien tenga la tutela


LABELS = {
    DocumentKind.PHOTO_ID: "Identificación oficial con fotografía",
    DocumentKind.CURP: "CURP certificada",
    DocumentKind.ADDRESS_PROOF: "Comprobante de domicilio (máximo 6 meses)",
    DocumentKind.BIRTH_CERTIFICATE: "Acta de nacimiento",
    DocumentKind.GUARDIAN_ID: "Identificación de la madre, el padre o tutor",
}
ADULT = (DocumentKind.PHOTO_ID, DocumentKind.CURP, DocumentKind.ADDRESS_PROOF)
MINOR = (DocumentKind.BIRTH_CERTIFICATE, DocumentKind.CURP, DocumentKind.GUARDIAN_ID)


class Document(BaseModel):
    """A document the operator saw. The date matters for the proof of address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: DocumentKind
    issued_on: date | None = Field(default=None, description="fecha del documento")
    reference: str | None = Field(default=None, max_length=60, description="folio o número")


@dataclass(frozen=True, slots=True)
class Missing:
    kind: DocumentKind
    reason: str


def required(birth: date, day: date) -> tuple[DocumentKind, ...]:
    return MINOR if is_minor(birth, day) else ADULT


def months_before(day: date, months: int) -> date:
    """The same day `months` calendar months earlier (the last day when that month is short)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def checklist(
    birth: date,
    visit: date,
    documents: list[Document],
    waived: frozenset[DocumentKind] = frozenset(),
) -> list[Missing]:
    """What blocks the enrollment (empty when nothing does), in the order of the checklist."""
    seen = {d.kind: d for d in documents}
    out: list[Missing] = []
    for kind in required(birth, visit):
        if kind in waived:
            continue
        doc = seen.get(kind)
        if doc is None:
            out.append(Missing(kind, "falta"))
            continue
        if kind is DocumentKind.ADDRESS_PROOF:
            oldest = months_before(visit, ADDRESS_PROOF_MONTHS)
            if doc.issued_on is None:
                out.append(Missing(kind, "indique la fecha del comprobante"))
            elif doc.issued_on > visit:
                out.append(Missing(kind, "la fecha del comprobante es posterior a la visita"))
            elif doc.issued_on < oldest:
                out.append(
                    Missing(
                        kind, f"tiene más de 6 meses (debe ser del {oldest:%d/%m/%Y} o después)"
                    )
                )
    return out
