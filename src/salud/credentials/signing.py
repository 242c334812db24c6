"""Signing keys: generation, rotation, withdrawal, and the signer the app holds.

Private keys are sealed at rest under the KEK (kit/sealing.py, associated data binds each to
its kid) and opened only in the signing process. Rotation retires the key in service (its
`valid_to` is set, it stays published) and puts a new one in service, in one transaction.
Cards are issued with python-cwt (COSE_Sign1, RFC 9052): the key id goes in the protected
header as the spec asks, and nothing else is added to the headers."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import base45
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cwt import COSE, COSEKey
from cwt.cose_key_interface import COSEKeyInterface
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.credentials.keyset import ALG_EDDSA, ALG_ES256, KeySet, PublicKey
from salud.credentials.models import SigningKey
from salud.errors import Conflict, InvalidInput, NotFound
from salud.kit.clock import utcnow
from salud.kit.sealing import Keyring, open_sealed, rewrap, seal
from salud.storage import locks

CACHE_SECONDS = 30.0  # how soon a rotation made by another process is seen
# A card signed with a key the cached set lacks (another process rotated) reloads the set,
# at most once in this while: scans of forged kids cannot hammer the database.
RELOAD_SECONDS = 1.0
RETIRE_GRACE = timedelta(seconds=CACHE_SECONDS + 30)  # a retired key's overlap with the new one


def _associated(kid: str) -> bytes:
    return b"signing-key:" + kid.encode()


def _new_key(alg: int) -> tuple[bytes, bytes]:
    """(public, private) raw bytes: Ed25519 32+32, or P-256 SEC1 point + 32-byte scalar."""
    if alg == ALG_EDDSA:
        priv = ed25519.Ed25519PrivateKey.generate()
        raw = priv.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        pub = priv.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return pub, raw
    ec_priv = ec.generate_private_key(ec.SECP256R1())
    point = ec_priv.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return point, ec_priv.private_numbers().private_value.to_bytes(32, "big")


def kid_of(public: bytes) -> bytes:
    """8 bytes of the public key's SHA-256: short (the QR carries it), stable, collision-safe
    for the handful of keys an issuer ever has."""
    return hashlib.sha256(public).digest()[:8]


def _public(row: SigningKey) -> PublicKey:
    return PublicKey(
        kid=bytes.fromhex(row.kid), alg=row.alg, public=row.public_key,
        valid_from=row.valid_from, valid_to=row.valid_to,
    )  # fmt: skip


async def rotate(session: AsyncSession, ring: Keyring, actor: str, alg: int = ALG_EDDSA) -> str:
    """Retire the key in service (if any) and put a new one in service; the new kid (hex)."""
    if alg not in (ALG_EDDSA, ALG_ES256):
        raise ValueError("alg must be -8 (EdDSA) or -7 (ES256)")
    # Two rotations at once (a double click) run one after the other: the second retires the
    # key the first put in service, instead of both leaving a key in service.
    await locks.hold(session, "credentials:signing-key-rotation", "signing_keys")
    now = utcnow().replace(microsecond=0)  # published windows are whole seconds
    # The retired key stays valid for a grace period as long as a signer's cache: another
    # server process may still sign with it until its cache expires, and a card it signs
    # then must verify (its `iat` inside the key's window), not be refused as unknown forever.
    for row in await session.scalars(
        select(SigningKey).where(SigningKey.valid_to.is_(None)).with_for_update()
    ):
        row.valid_to = now + RETIRE_GRACE
    public, private = _new_key(alg)
    kid = kid_of(public).hex()
    session.add(
        SigningKey(
            kid=kid,
            alg=alg,
            public_key=public,
            private_key_sealed=seal(private, ring, _associated(kid)),
            valid_from=now,
            valid_to=None,
            withdrawn_at=None,
            created_by=actor,
        )
    )
    await session.flush()
    return kid


_KID_HEX = re.compile(r"[0-9a-fA-F]{16}")
_KID_B64 = re.compile(r"[A-Za-z0-9_-]{11}")


def kid_hex(given: str) -> str:
    """A kid as a person may give it: in hex (16 digits, as `salud credentials keys` lists
    it and the database keeps it) or in base64url (11 characters, as /.well-known/jwks.json
    publishes it); the hex form, or InvalidInput naming `kid`."""
    text = given.strip()
    if _KID_HEX.fullmatch(text):
        return text.lower()
    if _KID_B64.fullmatch(text):
        try:
            raw = base64.urlsafe_b64decode(text + "=")
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 8:
            return raw.hex()
    raise InvalidInput.on(
        "kid", "no es el identificador de una llave: 16 dígitos hexadecimales (como los lista "
        "`salud credentials keys`) u 11 caracteres base64url (como los publica el JWKS)",
    )  # fmt: skip


async def withdraw(session: AsyncSession, kid: str) -> bool:
    """A compromised key (`kid` in hex or base64url): unpublished at once; every card it
    signed stops verifying. Whether it was the key in service (then none is until the next
    rotation)."""
    kid = kid_hex(kid)
    await locks.hold(session, "credentials:signing-key-rotation", "signing_keys")
    row = await session.scalar(select(SigningKey).where(SigningKey.kid == kid).with_for_update())
    if row is None:
        raise NotFound(f"no hay ninguna llave «{kid}»")
    if row.withdrawn_at is not None:
        raise Conflict(f"la llave {kid} ya fue retirada el {row.withdrawn_at:%Y-%m-%d %H:%M} UTC")
    in_service = row.valid_to is None
    row.withdrawn_at = utcnow()
    if row.valid_to is None:
        row.valid_to = row.withdrawn_at
    await session.flush()
    return in_service


async def rewrap_keys(session: AsyncSession, ring: Keyring) -> int:
    """Re-wrap every sealed private key under the current KEK (after a KEK rotation)."""
    moved = 0
    for row in await session.scalars(select(SigningKey)):
        new = rewrap(row.private_key_sealed, ring)
        if new != row.private_key_sealed:
            row.private_key_sealed = new
            moved += 1
    await session.flush()
    return moved


async def _published_keys(session: AsyncSession) -> list[PublicKey]:
    rows = await session.scalars(
        select(SigningKey).where(SigningKey.withdrawn_at.is_(None)).order_by(SigningKey.id)
    )
    return [_public(r) for r in rows]


async def published(session: AsyncSession) -> KeySet:
    """Every key not withdrawn, current and retired, with its validity window."""
    return KeySet(await _published_keys(session))


@dataclass(frozen=True, slots=True)
class ActiveKey:
    kid: bytes
    alg: int
    cose_key: COSEKeyInterface


def _cose_key(row: SigningKey, private: bytes) -> COSEKeyInterface:
    kid = bytes.fromhex(row.kid)
    if row.alg == ALG_EDDSA:
        params = {1: 1, -1: 6, -2: row.public_key, -4: private, 2: kid, 3: ALG_EDDSA}
    else:
        x, y = row.public_key[1:33], row.public_key[33:65]
        params = {1: 2, -1: 1, -2: x, -3: y, -4: private, 2: kid, 3: ALG_ES256}
    return COSEKey.new(params)


def pack(cose: bytes) -> str:
    """COSE bytes -> the QR text: zlib (level 9), then Base45 (RFC 9285)."""
    text: str = base45.b45encode(zlib.compress(cose, 9)).decode("ascii")
    return text


class SignerKeys(KeySet):
    """The key set a Signer serves: it knows where a fresher one comes from, for a card
    signed with a key put in service since (credentials.service verifies with it)."""

    def __init__(self, keys: Iterable[PublicKey], signer: Signer) -> None:
        super().__init__(keys)
        self.signer = signer


class Signer:
    """Signs claim sets with the key in service; also serves the published key set. Both
    are cached briefly, so a rotation made by another process is picked up within
    CACHE_SECONDS; a card whose key the cached set lacks asks for a reload (`fresher`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ring: Keyring) -> None:
        self._sessions = sessions
        self._ring = ring
        self._cose = COSE.new()
        self._active: tuple[float, ActiveKey] | None = None
        self._keys: tuple[float, SignerKeys] | None = None
        self._reloading = asyncio.Lock()

    def forget(self) -> None:
        self._active = self._keys = None

    async def active(self) -> ActiveKey:
        cached = self._active
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        async with self._sessions() as session:
            row = await session.scalar(
                select(SigningKey)
                .where(SigningKey.valid_to.is_(None), SigningKey.withdrawn_at.is_(None))
                .order_by(SigningKey.id.desc())
                .limit(1)
            )
        if row is None:
            raise Conflict(
                "no hay llave de firma en servicio: ejecute `salud credentials rotate-key`"
            )
        private = open_sealed(row.private_key_sealed, self._ring, _associated(row.kid))
        key = ActiveKey(bytes.fromhex(row.kid), row.alg, _cose_key(row, private))
        self._active = (time.monotonic(), key)
        return key

    async def keys(self) -> SignerKeys:
        cached = self._keys
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        return await self._load_keys()

    async def _load_keys(self) -> SignerKeys:
        async with self._sessions() as session:
            found = SignerKeys(await _published_keys(session), self)
        self._keys = (time.monotonic(), found)
        return found

    async def fresher(self, than: KeySet) -> SignerKeys | None:
        """A key set newer than `than`, which lacked a card's key: reloaded from the
        database unless that was done less than RELOAD_SECONDS ago (then None, or the set
        that reload gave when `than` is older). Concurrent asks share one reload."""
        async with self._reloading:
            cached = self._keys
            if cached is not None and cached[1] is not than:
                return cached[1]
            if cached is not None and time.monotonic() - cached[0] < RELOAD_SECONDS:
                return None
            return await self._load_keys()

    def sign(self, key: ActiveKey, claims_cbor: bytes) -> bytes:
        """COSE_Sign1 (tag 18) over the CWT claims, kid in the protected header."""
        encoded = self._cose.encode(
            claims_cbor, key.cose_key, protected={1: key.alg, 4: key.kid}, unprotected={}
        )
        assert isinstance(encoded, bytes)
        return encoded

    async def sign_text(self, claims_cbor: bytes) -> tuple[str, bytes]:
        """The QR text for a claim set, and the kid that signed it."""
        key = await self.active()
        return pack(self.sign(key, claims_cbor)), key.kid
