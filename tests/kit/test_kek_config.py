"""The KEK configuration is refused when it would lose sealed values: a KEK id that cannot be
written into a sealed value, or two different keys under one id (a KEK rotated without a new
SALUD_KEK_ID: the old one was silently dropped and every value sealed under it was lost)."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from salud.config import Settings
from salud.kit.sealing import Keyring, kek_id_problem, open_sealed, rewrap, seal


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_an_old_kek_under_the_current_id_with_other_bytes_is_refused() -> None:
    old = _key()
    blob = seal(b"secreto", Keyring.from_config("2025", old))
    with pytest.raises(ValueError, match="«2025»"):
        Keyring.from_config("2025", _key(), f"2025:{old}")
    # Under its own id the old key opens what it sealed, and the rotation moves it.
    ring = Keyring.from_config("2026", _key(), f"2025:{old}")
    assert open_sealed(rewrap(blob, ring), ring) == b"secreto"


def test_the_current_kek_repeated_with_the_same_bytes_is_tolerated() -> None:
    key = _key()
    ring = Keyring.from_config("2026", key, f"2026:{key}")
    assert ring.keys == {"2026": base64.b64decode(key)}


def test_an_old_kek_id_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="«2024» aparece más de una vez"):
        Keyring.from_config("2026", _key(), f"2024:{_key()}, 2025:{_key()},2024:{_key()}")
    key = _key()
    with pytest.raises(ValueError, match="«2024»"):  # even with the same bytes
        Keyring.from_config("2026", _key(), f"2024:{key},2024:{key}")


def test_an_old_kek_without_its_id_is_refused_without_quoting_it() -> None:
    key = _key()
    with pytest.raises(ValueError, match="id:base64") as refused:
        Keyring.from_config("2026", _key(), key)
    assert key not in str(refused.value)


@pytest.mark.parametrize(
    "kek_id", ["llave-ñ", "", "x" * 256, "a:b", "a,b", " borde", "borde ", "ü" * 200, "a\tb"]
)
def test_a_kek_id_that_cannot_be_sealed_under_is_refused(kek_id: str) -> None:
    assert kek_id_problem(kek_id) is not None
    with pytest.raises(ValueError, match="identificador de KEK"):
        Keyring.from_config(kek_id, _key())
    # (',' and ':' split SALUD_OLD_KEKS elsewhere, and its items are stripped)
    if ":" not in kek_id and "," not in kek_id and kek_id == kek_id.strip():
        with pytest.raises(ValueError, match="identificador de KEK"):
            Keyring.from_config("2026", _key(), f"{kek_id}:{_key()}")
    with pytest.raises(ValidationError, match="kek_id"):
        Settings(kek_id=kek_id)


# Ids the earlier releases sealed under still name their KEK (a stricter rule locked a
# deployment out of what it had sealed).
@pytest.mark.parametrize(
    "kek_id", ["2026", "kek.2026-01_a", "x" * 255, "kek 2025/01", "prod@1", "dev"]
)
def test_a_valid_kek_id_seals_and_opens(kek_id: str) -> None:
    assert kek_id_problem(kek_id) is None
    assert Settings(kek_id=kek_id).kek_id == kek_id
    ring = Keyring.from_config(kek_id, _key())
    assert open_sealed(seal(b"huella", ring), ring) == b"huella"
