"""Envelope encryption at rest (AES-256-GCM).

Each value gets its own data key; the data key is wrapped with the key-encryption key (KEK)
from configuration. Rotating the KEK re-wraps the data keys only (`rewrap`), so nothing is
lost and the bulk data is not re-encrypted. Layout of a sealed value:

    b"S1" | kek-id length (1) | kek-id | wrap nonce (12) | wrapped data key (48)
          | nonce (12) | ciphertext + tag
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_MAGIC = b"S1"

# A KEK id is written into every sealed value (one length byte, then the id in ASCII) and
# configured in SALUD_OLD_KEKS as "id:base64,...": printable ASCII, 1 to 255 characters, no
# ',' or ':', no space at either end. Every id the earlier releases could seal under passes
# (a stricter rule would lock a deployment out of what it sealed).
KEK_ID_RULE = (
    "de 1 a 255 caracteres ASCII imprimibles, sin ',' ni ':' ni espacios al principio o al final"
)


def kek_id_problem(kek_id: str) -> str | None:
    """Why `kek_id` cannot name a KEK, or None if it can."""
    if (
        1 <= len(kek_id) <= 255
        and kek_id == kek_id.strip()
        and all(" " <= c <= "~" for c in kek_id)
        and "," not in kek_id
        and ":" not in kek_id
    ):
        return None
    return f"el identificador de KEK «{kek_id}» no es válido: use {KEK_ID_RULE}"


class SealError(ValueError):
    """The value cannot be opened: unknown key, or altered bytes."""


@dataclass(frozen=True)
class Keyring:
    """The current KEK (seals) and every KEK still accepted (opens)."""

    current_id: str
    keys: Mapping[str, bytes]

    @classmethod
    def from_config(cls, kek_id: str, kek_b64: str, old: str = "") -> Keyring:
        """The keyring of SALUD_KEK_ID/SALUD_KEK and SALUD_OLD_KEKS ("id:base64,...").

        Every id must be valid (`kek_id_problem`) and name one key only: an old KEK listed
        twice, or under the current id with other bytes (a KEK rotated without a new id), is
        refused, since sealed values name their KEK by id and one of the two would be lost.
        The current KEK repeated in SALUD_OLD_KEKS with the same bytes is harmless and
        tolerated."""
        _check_id(kek_id)
        keys = {kek_id: _decode(kek_id, kek_b64)}
        seen: set[str] = set()
        for item in filter(None, (p.strip() for p in old.split(","))):
            old_id, colon, value = item.partition(":")
            if not colon:  # never quote the item: it may be the key itself
                raise ValueError("SALUD_OLD_KEKS: cada KEK anterior va como id:base64")
            old_id = old_id.strip()
            _check_id(old_id)
            if old_id in seen:
                raise ValueError(f"SALUD_OLD_KEKS: la KEK «{old_id}» aparece más de una vez")
            seen.add(old_id)
            key = _decode(old_id, value.strip())
            if old_id == kek_id and key != keys[kek_id]:
                raise ValueError(
                    f"SALUD_OLD_KEKS: la KEK anterior «{old_id}» lleva el identificador de la "
                    "actual con otra llave; al rotar la KEK dé a la nueva otro SALUD_KEK_ID"
                )
            keys[old_id] = key
        return cls(kek_id, keys)


def _check_id(kek_id: str) -> None:
    problem = kek_id_problem(kek_id)
    if problem:
        raise ValueError(problem)


def _decode(kek_id: str, value: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError:
        raise ValueError(f"la KEK «{kek_id}» no es base64 válido") from None
    if len(key) != 32:
        raise ValueError(f"la KEK «{kek_id}» debe tener 32 bytes (AES-256), tiene {len(key)}")
    return key


def seal(plaintext: bytes, ring: Keyring, associated: bytes = b"") -> bytes:
    kid = ring.current_id.encode()
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce, nonce = os.urandom(12), os.urandom(12)
    wrapped = AESGCM(ring.keys[ring.current_id]).encrypt(wrap_nonce, data_key, _MAGIC + kid)
    body = AESGCM(data_key).encrypt(nonce, plaintext, associated)
    return _MAGIC + bytes([len(kid)]) + kid + wrap_nonce + wrapped + nonce + body


def _split(blob: bytes) -> tuple[str, bytes, bytes, bytes, bytes]:
    if blob[:2] != _MAGIC or len(blob) < 3:
        raise SealError("no es un valor sellado")
    n = blob[2]
    try:
        kid = blob[3 : 3 + n].decode("ascii")
    except UnicodeDecodeError:
        raise SealError("identificador de llave ilegible") from None
    rest = blob[3 + n :]
    if len(rest) < 12 + 48 + 12 + 16:
        raise SealError("valor sellado truncado")
    return kid, rest[:12], rest[12:60], rest[60:72], rest[72:]


def _data_key(kid: str, wrap_nonce: bytes, wrapped: bytes, ring: Keyring) -> bytes:
    kek = ring.keys.get(kid)
    if kek is None:
        raise SealError(f"la llave «{kid}» no está en el llavero")
    try:
        return AESGCM(kek).decrypt(wrap_nonce, wrapped, _MAGIC + kid.encode())
    except Exception:
        raise SealError("la llave de datos fue alterada") from None


def open_sealed(blob: bytes, ring: Keyring, associated: bytes = b"") -> bytes:
    kid, wrap_nonce, wrapped, nonce, body = _split(blob)
    data_key = _data_key(kid, wrap_nonce, wrapped, ring)
    try:
        return AESGCM(data_key).decrypt(nonce, body, associated)
    except Exception:
        raise SealError("el contenido sellado fue alterado") from None


def rewrap(blob: bytes, ring: Keyring) -> bytes:
    """The same value with its data key wrapped by the current KEK (the body is unchanged)."""
    kid, wrap_nonce, wrapped, nonce, body = _split(blob)
    if kid == ring.current_id:
        return blob
    data_key = _data_key(kid, wrap_nonce, wrapped, ring)
    new_kid = ring.current_id.encode()
    new_nonce = os.urandom(12)
    new_wrapped = AESGCM(ring.keys[ring.current_id]).encrypt(new_nonce, data_key, _MAGIC + new_kid)
    return _MAGIC + bytes([len(new_kid)]) + new_kid + new_nonce + new_wrapped + nonce + body
