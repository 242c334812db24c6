"""Test keys and signing without a database (the offline half of the credential)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cwt import COSE

from salud.credentials.claims import CardClaims, CardKind, Entitlement, Holder, to_cbor
from salud.credentials.keyset import ALG_EDDSA, KeySet, PublicKey
from salud.credentials.models import SigningKey
from salud.credentials.signing import ActiveKey, _cose_key, _new_key, kid_of, pack

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def make_key(
    alg: int = ALG_EDDSA, valid_from: datetime | None = None, valid_to: datetime | None = None
) -> tuple[ActiveKey, PublicKey]:
    public, private = _new_key(alg)
    kid = kid_of(public)
    row = SigningKey(kid=kid.hex(), alg=alg, public_key=public)
    active = ActiveKey(kid, alg, _cose_key(row, private))
    start = valid_from or NOW - timedelta(days=365)
    return active, PublicKey(kid, alg, public, start, valid_to)


def sign(key: ActiveKey, claims_cbor: bytes) -> str:
    cose = COSE.new().encode(claims_cbor, key.cose_key, protected={1: key.alg, 4: key.kid})
    return pack(cose)


def holder(**kw: object) -> Holder:
    base: dict[str, object] = {
        "curp": "PEGJ850315HHGRRN09",
        "given_names": "JUANA",
        "surnames": "PÉREZ DE LA CRUZ",
        "birth_date": date(1985, 3, 15),
        "sex": "M",
        "nationality": "MEX",
        "blood_type": "O+",
        "organ_donor": "yes",
    }
    base.update(kw)
    return Holder(**base)  # type: ignore[arg-type]


def claims(**kw: object) -> CardClaims:
    base: dict[str, object] = {
        "issuer": "https://salud.gob.mx/credencial",
        "holder": holder(),
        "credential_id": bytes(range(10)),
        "sequence": 1,
        "kind": CardKind.PLASTIC,
        "issued_at": NOW,
        "not_before": NOW,
        "expires_at": NOW + timedelta(days=3650),
    }
    base.update(kw)
    return CardClaims(**base)  # type: ignore[arg-type]


def digital(as_of: datetime = NOW, hours: int = 12) -> CardClaims:
    return claims(
        kind=CardKind.DIGITAL,
        issued_at=as_of,
        not_before=as_of,
        expires_at=as_of + timedelta(hours=hours),
        entitlement=Entitlement(as_of, (2, 3), "HGIMB000011"),
    )


def card_text(key: ActiveKey, c: CardClaims | None = None) -> str:
    return sign(key, to_cbor(c or claims()))


def keyset(*keys: PublicKey) -> KeySet:
    return KeySet(keys)
