"""SQL of the credential's hot path: everything reception needs about a scanned card in ONE
indexed statement through the FastReader (raw asyncpg on PostgreSQL): the card's state, the
holder's sealed photo, the identity the registry holds now (to tell a card whose data
changed since its issuance), assigned unit and affiliations (one row per affiliation)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from salud.credentials.claims import Holder
from salud.credentials.models import Credential
from salud.identity.models import Affiliation, Person, PersonPhoto
from salud.storage.fastread import FastQuery, FastReader

_C, _H = Credential.__table__.c, PersonPhoto.__table__.c
_P, _A = Person.__table__.c, Affiliation.__table__.c
_CARD = FastQuery(
    text(
        "SELECT c.person_curp, c.sequence, c.status, c.digital_active, "
        "h.image_sealed, h.media_type, p.assigned_clues, p.given_names, p.first_surname, "
        "p.second_surname, p.birth_date, p.sex, p.nationality, p.blood_type, p.organ_donor, "
        "a.institution_code, a.valid_from, a.valid_to, a.status AS a_status "
        "FROM credentials c "
        "LEFT JOIN person_photos h ON h.person_curp = c.person_curp "
        "LEFT JOIN persons p ON p.curp = c.person_curp "
        "LEFT JOIN affiliations a ON a.person_id = p.id "
        "WHERE c.credential_id = :credential_id ORDER BY a.id"
    ).columns(
        _C.person_curp,
        _C.sequence,
        _C.status,
        _C.digital_active,
        _H.image_sealed,
        _H.media_type,
        _P.assigned_clues,
        _P.given_names,
        _P.first_surname,
        _P.second_surname,
        _P.birth_date,
        _P.sex,
        _P.nationality,
        _P.blood_type,
        _P.organ_donor,
        _A.institution_code,
        _A.valid_from,
        _A.valid_to,
        _A.status.label("a_status"),
    ),
    ["credential_id"],
)


_CARD_COLUMNS = (
    "person_curp", "sequence", "status", "digital_active", "image_sealed", "media_type",
    "assigned_clues", "given_names", "first_surname", "second_surname", "birth_date", "sex",
    "nationality", "blood_type", "organ_donor",
)  # fmt: skip


async def scanned_card(
    reader: FastReader, credential_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(the card with photo and assigned unit, the holder's affiliation rows), or None."""
    rows = await reader.fetch(_CARD, credential_id=credential_id)
    if not rows:
        return None
    first = rows[0]
    card = {k: first[k] for k in _CARD_COLUMNS}
    affiliations = [
        {"institution_code": r["institution_code"], "valid_from": r["valid_from"],
         "valid_to": r["valid_to"], "status": r["a_status"]}
        for r in rows
        if r["institution_code"] is not None
    ]  # fmt: skip
    return card, affiliations


def holder_now(card: dict[str, Any]) -> Holder | None:
    """The holder as the registry has them now (from `scanned_card`'s card), in the shape a
    card's claims carry; None if the person is gone from the registry."""
    if card["given_names"] is None:
        return None
    surnames = " ".join(p for p in (card["first_surname"], card["second_surname"]) if p)
    return Holder(
        curp=card["person_curp"], given_names=card["given_names"], surnames=surnames,
        birth_date=card["birth_date"], sex=card["sex"], nationality=card["nationality"],
        blood_type=card["blood_type"], organ_donor=card["organ_donor"],
    )  # fmt: skip
