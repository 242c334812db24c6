"""The offline verifier: every failure has its own reason; independent implementations
(python-cwt, the claim169 package) agree with ours on the same cards."""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import date, timedelta

import base45
import cbor2
import claim169
import pytest
from cwt import COSE, COSEKey
from hypothesis import given, settings
from hypothesis import strategies as st

from salud.credentials.claims import (
    CardKind,
    Entitlement,
    credential_id_bytes,
    credential_id_text,
    to_cbor,
)
from salud.credentials.keyset import ALG_ES256, KeySet
from salud.credentials.signing import pack
from salud.credentials.verify import Reason, VerificationFailed, offline_verdict, verify
from tests.credentials.keys import NOW, card_text, claims, digital, holder, keyset, make_key, sign


def reason_of(text: str, keys: KeySet, **kw: object) -> Reason:
    with pytest.raises(VerificationFailed) as caught:
        verify(text, keys, **kw)  # type: ignore[arg-type]
    return caught.value.reason


def test_a_card_verifies_and_reads_back_every_field() -> None:
    key, public = make_key()
    text = card_text(key)
    verified = verify(text, keyset(public), now=NOW)
    assert verified.claims == claims()
    assert verified.key.kid == key.kid
    assert offline_verdict(verified) == ("valid", None)
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def test_a_digital_card_is_valid_as_of_its_statement() -> None:
    key, public = make_key()
    verified = verify(card_text(key, digital()), keyset(public), now=NOW + timedelta(hours=2))
    assert offline_verdict(verified) == ("valid_as_of", NOW)
    assert verified.claims.entitlement is not None
    assert verified.claims.entitlement.institutions == (2, 3)
    # Past its hours, the statement is no longer valid offline.
    assert reason_of(card_text(key, digital()), keyset(public), now=NOW + timedelta(hours=13)) is (
        Reason.EXPIRED
    )


def test_es256_cards_verify_too() -> None:
    key, public = make_key(ALG_ES256)
    assert verify(card_text(key), keyset(public), now=NOW).claims == claims()


def test_each_failure_has_its_reason() -> None:
    key, public = make_key()
    keys = keyset(public)
    good = card_text(key)
    cose = zlib.decompress(base45.b45decode(good))
    assert reason_of("hola, no soy un QR", keys) is Reason.NOT_BASE45
    assert reason_of(base45.b45encode(b"\x01\x02\x03plain").decode(), keys) is Reason.NOT_ZLIB
    assert reason_of(pack(b"\xff\xfe not cbor at all"), keys) is Reason.NOT_COSE
    assert reason_of(pack(cbor2.dumps({"a": 1})), keys) is Reason.NOT_COSE
    assert reason_of(good[: len(good) // 2], keys) in {Reason.NOT_BASE45, Reason.NOT_ZLIB}
    other, _ = make_key()
    assert reason_of(card_text(other), keys) is Reason.UNKNOWN_KEY
    # Same kid, other private key: a forgery.
    forger, _ = make_key()
    forged = sign(type(key)(key.kid, key.alg, forger.cose_key), to_cbor(claims()))
    assert reason_of(forged, keys) is Reason.BAD_SIGNATURE
    # A changed claim under the original signature.
    item = cbor2.loads(cose)
    payload = cbor2.loads(item.value[2])
    payload[169][1] = "XXXX850315HHGRRN09"
    item.value[2] = cbor2.dumps(payload)
    assert reason_of(pack(cbor2.dumps(item)), keys) is Reason.BAD_SIGNATURE
    expired = claims(expires_at=NOW - timedelta(days=1), issued_at=NOW - timedelta(days=9))
    assert reason_of(card_text(key, expired), keys, now=NOW) is Reason.EXPIRED
    early = claims(not_before=NOW + timedelta(days=1))
    assert reason_of(card_text(key, early), keys, now=NOW) is Reason.NOT_YET_VALID
    no_identity = cbor2.dumps({1: "https://x", 4: 2_000_000_000, 6: 1_700_000_000})
    assert reason_of(sign(key, no_identity), keys, now=NOW) is Reason.MALFORMED_CLAIMS
    bad_birth = cbor2.loads(to_cbor(claims()))
    bad_birth[169][8] = "19851315"
    assert reason_of(sign(key, cbor2.dumps(bad_birth)), keys, now=NOW) is Reason.MALFORMED_CLAIMS


def test_a_retired_key_still_verifies_its_cards_but_not_later_ones() -> None:
    old_key, old_public = make_key(valid_to=NOW)
    new_key, new_public = make_key(valid_from=NOW)
    keys = keyset(old_public, new_public)
    before = card_text(old_key, claims(issued_at=NOW - timedelta(days=30)))
    assert verify(before, keys, now=NOW + timedelta(days=400)).key.kid == old_key.kid
    assert verify(card_text(new_key), keys, now=NOW).key.kid == new_key.kid
    # A card "issued" after the old key was retired is refused (a stolen retired key).
    late = card_text(old_key, claims(issued_at=NOW + timedelta(days=2)))
    assert reason_of(late, keys, now=NOW + timedelta(days=3)) is Reason.UNKNOWN_KEY


def test_key_sets_round_trip_through_cose_and_jwks() -> None:
    _, ed = make_key(valid_to=NOW)
    _, es = make_key(ALG_ES256)
    keys = keyset(ed, es)
    assert KeySet.from_cose(keys.to_cose()).keys == keys.keys
    assert KeySet.from_jwks(keys.to_jwks()).keys == keys.keys


def test_python_cwt_and_claim169_read_our_card() -> None:
    key, public = make_key()
    text = card_text(key, claims(expires_at=NOW + timedelta(days=36500)))
    cose = zlib.decompress(base45.b45decode(text))
    verifier = COSEKey.new({1: 1, -1: 6, -2: public.public, 2: key.kid, 3: -8})
    payload = cbor2.loads(COSE.new().decode(cose, verifier))
    assert payload[169][1] == "PEGJ850315HHGRRN09"
    decoded = claim169.decode_with_ed25519(text, public.public, validate_timestamps=False)
    assert decoded.is_verified()
    assert decoded.claim169.id == "PEGJ850315HHGRRN09"
    assert decoded.claim169.full_name == "JUANA PÉREZ DE LA CRUZ"
    assert decoded.claim169.date_of_birth in {"19850315", "1985-03-15"}
    assert decoded.claim169.gender == 2
    assert decoded.claim169.country_of_issuance == "MX"
    assert decoded.detected_compression == "zlib"
    # And it refuses the card under another key.
    _, other = make_key()
    with pytest.raises(claim169.Claim169Exception):
        claim169.decode_with_ed25519(text, other.public, validate_timestamps=False)


def test_credential_ids_round_trip() -> None:
    raw = bytes(range(10, 20))
    assert credential_id_bytes(credential_id_text(raw)) == raw
    assert len(credential_id_text(raw)) == 16


_names = st.text(
    alphabet=st.sampled_from("ABCDEFGHIJKLMNÑOPQRSTUVWXYZÁÉÍÓÚÜ '-."), min_size=1, max_size=40
).filter(lambda s: s.strip() == s and s)


@settings(max_examples=60, deadline=None)
@given(
    given_names=_names,
    surnames=_names,
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 11, 30)),
    sex=st.sampled_from("HMX"),
    blood=st.sampled_from(["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-", "unknown"]),
    donor=st.sampled_from(["yes", "no", "not_stated"]),
    sequence=st.integers(min_value=1, max_value=10_000),
    kind=st.sampled_from(list(CardKind)),
    curp=st.from_regex(r"[A-Z][AEIOUX][A-Z]{2}\d{6}[HMX][A-Z]{5}[0-9A-Z]\d", fullmatch=True),
    nationality=st.sampled_from(["MEX", "GTM", "HND", "VEN", "USA", "COL", "HTI", "CUB"]),
    face=st.none() | st.binary(min_size=1, max_size=300),
    institutions=st.lists(st.integers(1, 99), min_size=0, max_size=4, unique=True),
    clues=st.none() | st.from_regex(r"[A-Z]{5}\d{6}", fullmatch=True),
)
def test_sign_then_verify_round_trips_any_valid_person(
    given_names: str, surnames: str, birth: date, sex: str, blood: str, donor: str,
    sequence: int, kind: CardKind, curp: str, nationality: str, face: bytes | None,
    institutions: list[int], clues: str | None,
) -> None:  # fmt: skip
    key, public = _KEY
    digital = kind is CardKind.DIGITAL
    c = claims(
        holder=holder(curp=curp, given_names=given_names, surnames=surnames, birth_date=birth,
                      sex=sex, nationality=nationality, blood_type=blood, organ_donor=donor),
        sequence=sequence, kind=kind, face=face, face_format="jpeg" if face else None,
        entitlement=Entitlement(NOW, tuple(institutions), clues) if digital else None,
    )  # fmt: skip
    assert verify(card_text(key, c), keyset(public), now=NOW).claims == c


_KEY = make_key()
_TEXT = card_text(_KEY[0])
_COSE = zlib.decompress(base45.b45decode(_TEXT))


def test_cbor_that_overflows_on_decoding_is_refused_with_its_reason() -> None:
    """Tags whose decoding overflows (a decimal fraction with an exponent of 2**70, an epoch
    date past the calendar) are a refusal, never an error escaping the verifier: the public
    validation endpoint takes any text."""
    key, public = make_key()
    keys = keyset(public)
    hostile = [cbor2.CBORTag(4, [2**70, 1]), cbor2.CBORTag(5, [2**70, 1]),
               cbor2.CBORTag(100, 10**30), cbor2.CBORTag(1, 10**30)]  # fmt: skip
    assert reason_of("6BF2WN:H42ZV:ZRU/SON1W00*9854", keys) is Reason.NOT_COSE
    for item in hostile:
        assert reason_of(pack(cbor2.dumps(item)), keys) is Reason.NOT_COSE
        header = cbor2.dumps({1: -8, 4: key.kid, 99: item})
        sign1 = cbor2.CBORTag(18, [header, {}, b"", b"\0" * 64])
        assert reason_of(pack(cbor2.dumps(sign1)), keys) is Reason.NOT_COSE
        payload = cbor2.dumps({1: "https://x", 4: 2_000_000_000, 6: 1_700_000_000, 99: item})
        assert reason_of(sign(key, payload), keys, now=NOW) is Reason.MALFORMED_CLAIMS


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=len(_COSE) - 1), flip=st.integers(1, 255))
def test_any_byte_change_is_refused(position: int, flip: int) -> None:
    changed = bytearray(_COSE)
    changed[position] ^= flip
    with pytest.raises(VerificationFailed):
        verify(pack(bytes(changed)), keyset(_KEY[1]), now=NOW)


def _signed_sign1(protected: bytes, payload: bytes) -> str:
    """A COSE_Sign1 truly signed with _KEY over these protected and payload bytes, packed."""
    key = _KEY[0]
    signature = key.cose_key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    return pack(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature])))


def test_bytes_after_the_signed_message_are_refused_as_not_cose() -> None:
    """cbor2.loads reads the first item and ignores what follows: a card with bytes appended
    inside the zlib stream verified, so one card had endless valid QR texts. The claim169
    package refuses them; so do we, in the COSE message, its protected header and (a
    payload we signed ourselves) the claims."""
    keys = keyset(_KEY[1])
    for extra in (b"\x00", cbor2.dumps(1), cbor2.dumps(_COSE), b"\x00garbage"):
        text = pack(_COSE + extra)
        with pytest.raises(VerificationFailed) as caught:
            verify(text, keys, now=NOW)
        assert caught.value.reason is Reason.NOT_COSE
        assert "sobrantes" in caught.value.message
        with pytest.raises(claim169.Claim169Exception):
            claim169.decode_with_ed25519(text, _KEY[1].public, validate_timestamps=False)
    protected = cbor2.dumps({1: _KEY[0].alg, 4: _KEY[0].kid})
    payload = to_cbor(claims())
    assert verify(_signed_sign1(protected, payload), keys, now=NOW).claims == claims()
    assert reason_of(_signed_sign1(protected + b"\x00", payload), keys, now=NOW) is (
        Reason.NOT_COSE
    )
    assert reason_of(_signed_sign1(protected, payload + b"\x00"), keys, now=NOW) is (
        Reason.MALFORMED_CLAIMS
    )


@settings(max_examples=100, deadline=None)
@given(extra=st.binary(min_size=1, max_size=64))
def test_any_bytes_appended_to_the_signed_message_are_refused(extra: bytes) -> None:
    assert reason_of(pack(_COSE + extra), keyset(_KEY[1]), now=NOW) is Reason.NOT_COSE


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0, max_value=len(_TEXT) - 1), char=st.sampled_from(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"))  # fmt: skip
def test_any_character_change_of_the_qr_text_is_refused(position: int, char: str) -> None:
    """A changed character is refused, unless it only touched the deflate stream's padding
    bits: then the signed bytes are the same, and so is the credential."""
    if _TEXT[position] == char:
        return
    changed = _TEXT[:position] + char + _TEXT[position + 1 :]
    try:
        verified = verify(changed, keyset(_KEY[1]), now=NOW)
    except VerificationFailed:
        return
    assert zlib.decompress(base45.b45decode(changed)) == _COSE
    assert verified.claims == claims()


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_our_base45_decoder_agrees_with_the_base45_package(data: bytes) -> None:
    from salud.credentials.base45fast import b45decode

    text = base45.b45encode(data).decode()
    assert b45decode(text) == data == base45.b45decode(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:abc~é", max_size=60))
def test_our_base45_decoder_refuses_what_the_package_refuses(text: str) -> None:
    from salud.credentials.base45fast import b45decode

    try:
        expected: bytes | None = base45.b45decode(text)
    except (ValueError, KeyError, TypeError):
        expected = None
    if expected is None:
        with pytest.raises(ValueError, match="Base45"):
            b45decode(text)
    else:
        assert b45decode(text) == expected


def test_a_statement_naming_no_institution_is_identity_without_entitlement() -> None:
    """The statement says where the holder was entitled as of T; naming no institution, it
    says nowhere: the identity is valid, the entitlement is not (never "valid as of T")."""
    key, public = make_key()
    none = replace(digital(), entitlement=Entitlement(NOW, (), None))
    verified = verify(card_text(key, none), keyset(public), now=NOW + timedelta(hours=1))
    assert offline_verdict(verified) == ("not_entitled_as_of", NOW)
    some = verify(card_text(key, digital()), keyset(public), now=NOW + timedelta(hours=1))
    assert offline_verdict(some) == ("valid_as_of", NOW)
