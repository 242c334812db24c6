"""Published verification keys: a COSE Key Set (RFC 9052 §7) and a JWKS (RFC 7517).

Every key the issuer ever signed with is published with its validity window, so a card signed
years ago still verifies after a rotation: a card verifies under a key only if it was issued
(iat) while that key was in service. A key found compromised is withdrawn, not retired: it
leaves the set and every card it signed stops verifying ("unknown key").

Validity windows travel as private-use labels in COSE (below -65536, RFC 9052 §7.1) and as
extra members in the JWK (RFC 7517 §4 allows them)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ALG_EDDSA, ALG_ES256 = -8, -7
ALG_NAMES = {ALG_EDDSA: "EdDSA", ALG_ES256: "ES256"}
_VALID_FROM, _VALID_TO = -65537, -65538
PublicKeyObject = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class PublicKey:
    kid: bytes
    alg: int  # COSE algorithm: -8 EdDSA (Ed25519) or -7 ES256
    public: bytes  # Ed25519: the 32 raw bytes; ES256: the SEC1 uncompressed point
    valid_from: datetime
    valid_to: datetime | None  # None: the key in service now

    def key(self) -> PublicKeyObject:
        if self.alg == ALG_EDDSA:
            return ed25519.Ed25519PublicKey.from_public_bytes(self.public)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.public)

    def covers(self, moment: datetime) -> bool:
        """Was this key in service at `moment` (a credential's iat)? CWT times are whole
        seconds, so the window is compared at that precision."""
        start = self.valid_from.replace(microsecond=0)
        return start <= moment and (self.valid_to is None or moment <= self.valid_to)

    @property
    def kid_text(self) -> str:
        return _b64(self.kid)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class KeySet:
    """The verifier's trust store: kid -> public key (with the key object built once)."""

    def __init__(self, keys: Iterable[PublicKey]) -> None:
        self.keys: dict[bytes, PublicKey] = {k.kid: k for k in keys}
        self._objects: dict[bytes, PublicKeyObject] = {k.kid: k.key() for k in self.keys.values()}

    def get(self, kid: bytes) -> tuple[PublicKey, PublicKeyObject] | None:
        found = self.keys.get(kid)
        return None if found is None else (found, self._objects[kid])

    # --- COSE Key Set --------------------------------------------------------------------

    def to_cose(self) -> bytes:
        return cbor2.dumps([_cose_key(k) for k in self.keys.values()], canonical=True)

    @classmethod
    def from_cose(cls, data: bytes) -> KeySet:
        items = cbor2.loads(data)
        if not isinstance(items, list):
            raise ValueError("un COSE Key Set es un arreglo CBOR")
        return cls(_from_cose_key(m) for m in items)

    # --- JWKS ------------------------------------------------------------------------------

    def to_jwks(self) -> dict[str, Any]:
        return {"keys": [_jwk(k) for k in self.keys.values()]}

    @classmethod
    def from_jwks(cls, doc: Mapping[str, Any]) -> KeySet:
        return cls(_from_jwk(j) for j in doc["keys"])


def _epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), UTC)


def _cose_key(k: PublicKey) -> dict[int, Any]:
    m: dict[int, Any] = {2: k.kid, 3: k.alg, _VALID_FROM: _epoch(k.valid_from)}
    if k.alg == ALG_EDDSA:
        m.update({1: 1, -1: 6, -2: k.public})  # OKP, Ed25519, x
    else:
        m.update({1: 2, -1: 1, -2: k.public[1:33], -3: k.public[33:65]})  # EC2, P-256, x, y
    if k.valid_to is not None:
        m[_VALID_TO] = _epoch(k.valid_to)
    return m


def _from_cose_key(m: Mapping[int, Any]) -> PublicKey:
    alg = m[3]
    public = m[-2] if alg == ALG_EDDSA else b"\x04" + m[-2] + m[-3]
    valid_from = _when(m[_VALID_FROM])
    assert valid_from is not None
    return PublicKey(m[2], alg, public, valid_from, _when(m.get(_VALID_TO)))


def _jwk(k: PublicKey) -> dict[str, Any]:
    j: dict[str, Any] = {"kid": k.kid_text, "alg": ALG_NAMES[k.alg], "use": "sig"}
    if k.alg == ALG_EDDSA:
        j.update({"kty": "OKP", "crv": "Ed25519", "x": _b64(k.public)})
    else:
        j.update(
            {"kty": "EC", "crv": "P-256", "x": _b64(k.public[1:33]), "y": _b64(k.public[33:65])}
        )
    j["valid_from"] = _epoch(k.valid_from)
    if k.valid_to is not None:
        j["valid_to"] = _epoch(k.valid_to)
    return j


def _from_jwk(j: Mapping[str, Any]) -> PublicKey:
    if j["kty"] == "OKP":
        alg, public = ALG_EDDSA, _unb64(j["x"])
    else:
        alg, public = ALG_ES256, b"\x04" + _unb64(j["x"]) + _unb64(j["y"])
    valid_from = _when(j["valid_from"])
    assert valid_from is not None
    return PublicKey(_unb64(j["kid"]), alg, public, valid_from, _when(j.get("valid_to")))
