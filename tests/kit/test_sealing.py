"""Envelope encryption: round trips, tamper detection, and key rotation without loss."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salud.kit.sealing import Keyring, SealError, open_sealed, rewrap, seal


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


RING = Keyring.from_config("k1", _key())


@settings(max_examples=100)
@given(st.binary(max_size=4096), st.binary(max_size=32))
def test_seal_then_open_gives_back_the_bytes(data: bytes, aad: bytes) -> None:
    blob = seal(data, RING, aad)
    assert len(data) < 16 or data not in blob  # short strings can occur by chance
    assert open_sealed(blob, RING, aad) == data


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_changed_byte_is_refused(data: bytes, draw: st.DataObject) -> None:
    blob = bytearray(seal(data, RING))
    i = draw.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= draw.draw(st.integers(1, 255))
    with pytest.raises(SealError):
        open_sealed(bytes(blob), RING)


def test_wrong_associated_data_is_refused() -> None:
    with pytest.raises(SealError):
        open_sealed(seal(b"huella", RING, b"persona:1"), RING, b"persona:2")


def test_rotation_rewraps_without_loss() -> None:
    old = Keyring.from_config("2025", _key())
    blob = seal(b"foto de la credencial", old)
    new_key = _key()
    rotating = Keyring.from_config(
        "2026", new_key, f"2025:{old.keys['2025'] and base64.b64encode(old.keys['2025']).decode()}"
    )
    assert open_sealed(blob, rotating) == b"foto de la credencial"  # old key still opens
    moved = rewrap(blob, rotating)
    assert moved != blob
    after = Keyring.from_config("2026", new_key)  # the old key is gone
    assert open_sealed(moved, after) == b"foto de la credencial"
    with pytest.raises(SealError, match="2025"):
        open_sealed(blob, after)


def test_bad_keys_are_named() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring.from_config("x", base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="base64"):
        Keyring.from_config("x", "not base64!!")
