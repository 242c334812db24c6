"""The offline verifier: Base45 -> zlib -> COSE_Sign1 -> CWT -> claims, against published keys.

No database code (import-linter checks it): reception software, a phone or another
institution's service can run this with nothing but the published key set. Each failure has
one reason (`Reason`), in the order a reader meets them, and the signature is checked before
any date, so a forged card is reported as forged, not as expired.

COSE_Sign1 verification follows RFC 9052 §4.4 directly (Sig_structure "Signature1",
protected bytes, empty external AAD, payload): python-cwt, which issues the cards, spends
most of its verification time in generic COSE handling, and this path is the benchmark's
(bench/RESULTS.md). Two independent implementations check the same cards in the tests:
python-cwt and the `claim169` package."""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from salud.credentials.base45fast import b45decode
from salud.credentials.claims import CardClaims, CardKind, MalformedClaims, from_map
from salud.credentials.keyset import ALG_EDDSA, KeySet, PublicKey

MAX_TEXT = 4296  # the most alphanumeric characters a QR code holds (version 40-L)
MAX_INFLATED = 65536
COSE_SIGN1_TAG, CWT_TAG = 18, 61
LEEWAY = timedelta(seconds=60)  # clocks of readers in the field drift


class Reason(StrEnum):
    NOT_BASE45 = "not_base45"
    NOT_ZLIB = "not_zlib"
    NOT_COSE = "not_cose"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    MALFORMED_CLAIMS = "malformed_claims"


MESSAGES: dict[Reason, str] = {
    Reason.NOT_BASE45: "El texto leído no es Base45: no es el código de una credencial.",
    Reason.NOT_ZLIB: "El contenido no está comprimido con zlib: no es una credencial.",
    Reason.NOT_COSE: "El contenido no es un mensaje firmado COSE_Sign1.",
    Reason.UNKNOWN_KEY: "La firma usa una llave que no es de un emisor reconocido.",
    Reason.BAD_SIGNATURE: "La firma no corresponde al contenido: la credencial fue alterada.",
    Reason.EXPIRED: "La credencial venció.",
    Reason.NOT_YET_VALID: "La credencial todavía no es válida.",
    Reason.MALFORMED_CLAIMS: "La credencial está firmada pero sus datos no tienen el formato.",
}


class VerificationFailed(Exception):
    def __init__(self, reason: Reason, detail: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail or MESSAGES[reason]}")
        self.reason = reason
        self.detail = detail

    @property
    def message(self) -> str:
        return MESSAGES[self.reason] + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class Verified:
    claims: CardClaims
    key: PublicKey


def _inflate(data: bytes) -> bytes:
    if len(data) < 2 or data[0] & 0x0F != 8 or (data[0] << 8 | data[1]) % 31:
        raise VerificationFailed(Reason.NOT_ZLIB, "sin cabecera zlib")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED)
    except zlib.error:
        raise VerificationFailed(Reason.NOT_ZLIB, "datos comprimidos dañados") from None
    if inflater.unconsumed_tail:
        raise VerificationFailed(Reason.NOT_ZLIB, f"descomprimido pasa de {MAX_INFLATED} bytes")
    if not inflater.eof:
        raise VerificationFailed(Reason.NOT_ZLIB, "datos comprimidos incompletos")
    if inflater.unused_data:
        raise VerificationFailed(Reason.NOT_ZLIB, "datos sobrantes después del flujo zlib")
    return out


# What decoding hostile CBOR may raise besides its own error: a decimal fraction (tag 4/5)
# with an exponent of 2**70, or an epoch date (tag 100, 1) past the calendar, overflow.
_CBOR_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, ArithmeticError)


class _Leftover(Exception):
    """Bytes after the one CBOR item that should have filled the whole string."""


def _whole(data: bytes) -> Any:
    """The one CBOR item that `data` holds, to its last byte. cbor2.loads stops after the
    first item and ignores the rest, so one card would have endless QR texts (any bytes
    appended to it), which other readers (the claim169 package) refuse."""
    stream = io.BytesIO(data)
    item = cbor2.CBORDecoder(stream, read_size=1).decode()
    if stream.tell() != len(data):
        raise _Leftover
    return item


def _sign1(data: bytes) -> tuple[bytes, dict[Any, Any], bytes, bytes, dict[Any, Any]]:
    """(protected bytes, protected map, payload, signature, unprotected map)."""
    try:
        item = _whole(data)
    except _CBOR_ERRORS:
        raise VerificationFailed(Reason.NOT_COSE, "no es CBOR") from None
    except _Leftover:
        raise VerificationFailed(
            Reason.NOT_COSE, "bytes sobrantes después del mensaje COSE_Sign1"
        ) from None
    if isinstance(item, cbor2.CBORTag) and item.tag == CWT_TAG:
        item = item.value
    if isinstance(item, cbor2.CBORTag):
        if item.tag != COSE_SIGN1_TAG:
            raise VerificationFailed(Reason.NOT_COSE, f"etiqueta CBOR {item.tag}, no 18")
        item = item.value
    if not (isinstance(item, list) and len(item) == 4):
        raise VerificationFailed(Reason.NOT_COSE, "no es un arreglo de 4 elementos")
    protected, unprotected, payload, signature = item
    if not (
        isinstance(protected, bytes)
        and isinstance(unprotected, dict)
        and isinstance(payload, bytes)
        and isinstance(signature, bytes)
    ):
        raise VerificationFailed(Reason.NOT_COSE, "elementos de tipo incorrecto")
    try:
        header = _whole(protected) if protected else {}
    except _CBOR_ERRORS:
        raise VerificationFailed(Reason.NOT_COSE, "encabezado protegido ilegible") from None
    except _Leftover:
        raise VerificationFailed(
            Reason.NOT_COSE, "bytes sobrantes en el encabezado protegido"
        ) from None
    if not isinstance(header, dict):
        raise VerificationFailed(Reason.NOT_COSE, "encabezado protegido no es un mapa")
    return protected, header, payload, signature, unprotected


def _check_signature(key: PublicKey, obj: Any, alg: Any, to_sign: bytes, sig: bytes) -> None:
    if alg != key.alg:
        raise VerificationFailed(Reason.BAD_SIGNATURE, "el algoritmo no es el de la llave")
    try:
        if key.alg == ALG_EDDSA:
            assert isinstance(obj, ed25519.Ed25519PublicKey)
            obj.verify(sig, to_sign)
        else:
            assert isinstance(obj, ec.EllipticCurvePublicKey)
            if len(sig) != 64:
                raise InvalidSignature
            der = encode_dss_signature(int.from_bytes(sig[:32]), int.from_bytes(sig[32:]))
            obj.verify(der, to_sign, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationFailed(Reason.BAD_SIGNATURE) from None


def decode_cose(text: str) -> bytes:
    """Base45 text -> the COSE bytes (Reason.NOT_BASE45 / NOT_ZLIB on failure)."""
    if len(text) > MAX_TEXT:
        raise VerificationFailed(Reason.NOT_BASE45, "texto demasiado largo para un código QR")
    try:
        packed = b45decode(text)
    except ValueError:
        raise VerificationFailed(Reason.NOT_BASE45) from None
    return _inflate(packed)


def verify(text: str, keys: KeySet, now: datetime | None = None) -> Verified:
    """Verify the text of a scanned QR; VerificationFailed(reason) if it is not a valid card."""
    protected, header, payload, signature, unprotected = _sign1(decode_cose(text))
    kid = header.get(4, unprotected.get(4))
    if not isinstance(kid, bytes):
        raise VerificationFailed(Reason.UNKNOWN_KEY, "el mensaje no dice con qué llave se firmó")
    found = keys.get(kid)
    if found is None:
        raise VerificationFailed(Reason.UNKNOWN_KEY)
    key, obj = found
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    _check_signature(key, obj, header.get(1), to_sign, signature)
    try:
        claims = from_map(_whole(payload))
    except MalformedClaims as exc:
        raise VerificationFailed(Reason.MALFORMED_CLAIMS, str(exc)) from None
    except _CBOR_ERRORS:
        raise VerificationFailed(Reason.MALFORMED_CLAIMS, "la carga no es CBOR") from None
    except _Leftover:
        raise VerificationFailed(
            Reason.MALFORMED_CLAIMS, "bytes sobrantes después de los datos de la carga"
        ) from None
    if not key.covers(claims.issued_at):
        raise VerificationFailed(
            Reason.UNKNOWN_KEY, "la llave no estaba en servicio en la fecha de emisión"
        )
    now = now or datetime.now(UTC)
    if claims.expires_at < now - LEEWAY:
        raise VerificationFailed(
            Reason.EXPIRED, f"venció el {claims.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    if claims.not_before > now + LEEWAY:
        raise VerificationFailed(Reason.NOT_YET_VALID)
    return Verified(claims, key)


# What a verifier without network can say (`offline_verdict`).
OFFLINE_VALID = "valid"  # identity proven; entitlement needs the online check (a plastic card)
OFFLINE_VALID_AS_OF = "valid_as_of"  # a digital card: entitled at its institutions as of T
# A digital card whose statement names no institution: the identity is valid, but as of T the
# holder had no entitlement in force ("sin derechohabiencia vigente"): the statement says
# where the holder was entitled as of T (specs/credential-qr.md), and here that is nowhere.
OFFLINE_NOT_ENTITLED_AS_OF = "not_entitled_as_of"


def offline_verdict(verified: Verified) -> tuple[str, datetime | None]:
    """What a verifier without network can say: a digital card's signed statement makes it
    "valid as of T" when it names an institution, and "identity valid, no entitlement as of T"
    when it names none; a plastic card proves identity, its entitlement needs the online
    check."""
    c = verified.claims
    if c.kind is CardKind.DIGITAL and c.entitlement is not None:
        if not c.entitlement.institutions:
            return OFFLINE_NOT_ENTITLED_AS_OF, c.entitlement.as_of
        return OFFLINE_VALID_AS_OF, c.entitlement.as_of
    return OFFLINE_VALID, None


def stored_claims(text: str) -> CardClaims:
    """The claims of a QR text we signed and stored ourselves (a card's `qr_text`), decoded
    without checking the signature: what the card states, for printing its front from the
    same values its QR carries. Never for a scanned text: that is `verify`'s."""
    _protected, _header, payload, _signature, _unprotected = _sign1(decode_cose(text))
    try:
        return from_map(_whole(payload))
    except (MalformedClaims, _Leftover, *_CBOR_ERRORS) as exc:
        raise VerificationFailed(Reason.MALFORMED_CLAIMS, str(exc) or None) from None
