"""Rotating the key-encryption key loses nothing: `salud keys rewrap` re-wraps every sealed
value (TOTP secrets, signing keys, photos, fingerprints) under the new KEK, in chunks, so
that the old KEK can be retired; a second run has nothing left to move."""

from __future__ import annotations

import asyncio
import base64
import os

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.cli.main import app
from salud.config import Settings
from salud.enrollment.models import Fingerprint
from salud.enrollment.service import _fingerprint_aad
from salud.identity.models import PersonPhoto, PersonPhotoVersion
from salud.identity.photos import open_photo
from salud.identity.synth import synthetic_face
from salud.kit.sealing import Keyring, SealError, open_sealed
from tests.conftest import keyring_of
from tests.enrollment.conftest import Drive
from tests.enrollment.test_enrollment import enroll_adult

pytestmark = pytest.mark.db


def aad(f: Fingerprint) -> bytes:
    return _fingerprint_aad(f.person_curp, f.finger)


async def _sealed(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[list[PersonPhoto | PersonPhotoVersion], list[Fingerprint]]:
    """Every sealed photo (the current ones and those replaced) and fingerprint."""
    async with sessions() as session:
        photos: list[PersonPhoto | PersonPhotoVersion] = [
            *(await session.execute(select(PersonPhoto))).scalars(),
            *(await session.execute(select(PersonPhotoVersion))).scalars(),
        ]
        prints = list((await session.execute(select(Fingerprint))).scalars())
    return photos, prints


async def test_rewrap_moves_photos_and_fingerprints_to_the_new_kek(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str, settings: Settings,
    sessions: async_sessionmaker[AsyncSession], cli_env: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for seed in (51, 52):
        enrolled = await enroll_adult(anonymous, drive, seed)
    replaced = await anonymous.put(
        f"/api/v1/persons/{enrolled['curp']}/photo", content=synthetic_face(9),
        headers={**drive.supervisor, "Content-Type": "image/jpeg"},
    )  # fmt: skip
    assert replaced.status_code == 204, replaced.text
    photos, prints = await _sealed(sessions)
    assert any(isinstance(p, PersonPhotoVersion) for p in photos)
    assert len(photos) >= 3
    assert len(prints) >= 4
    old_ring = keyring_of(settings)
    plain_photos = {
        (type(p), p.id): open_photo(p.image_sealed, old_ring, p.person_curp) for p in photos
    }
    plain_prints = {f.id: open_sealed(f.image_sealed, old_ring, aad(f)) for f in prints}
    old = f"{settings.kek_id}:{settings.kek.get_secret_value()}"
    new_kek = base64.b64encode(os.urandom(32)).decode()

    def rewrap(kek_id: str, kek: str, old_keks: str) -> str:
        monkeypatch.setenv("SALUD_KEK_ID", kek_id)
        monkeypatch.setenv("SALUD_KEK", kek)
        monkeypatch.setenv("SALUD_OLD_KEKS", old_keks)
        from salud.config import get_settings

        get_settings.cache_clear()
        result = cli_env.invoke(app, ["keys", "rewrap", "--chunk", "1"])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())  # as one line (the console wraps it)

    try:
        said = await asyncio.to_thread(rewrap, "2027", new_kek, old)
        kept = sum(isinstance(p, PersonPhotoVersion) for p in photos)
        assert f"{len(photos) - kept} fotos, {kept} fotos anteriores" in said
        assert f"{len(prints)} huellas" in said
        only_new = Keyring.from_config("2027", new_kek)
        photos, prints = await _sealed(sessions)
        for p in photos:  # the new KEK alone opens every one, and they are what they were
            plain = plain_photos[type(p), p.id]
            assert open_photo(p.image_sealed, only_new, p.person_curp) == plain
            with pytest.raises(SealError):
                open_photo(p.image_sealed, old_ring, p.person_curp)
        for f in prints:
            assert open_sealed(f.image_sealed, only_new, aad(f)) == plain_prints[f.id]
            with pytest.raises(SealError):
                open_sealed(f.image_sealed, old_ring, aad(f))
        again = await asyncio.to_thread(rewrap, "2027", new_kek, old)
        assert "0 fotos" in again
        assert "0 huellas" in again
    finally:  # back to the test settings' KEK, for the tests that follow on this database
        await asyncio.to_thread(
            rewrap, settings.kek_id, settings.kek.get_secret_value(), f"2027:{new_kek}"
        )
    photos, _ = await _sealed(sessions)
    assert all(
        open_photo(p.image_sealed, old_ring, p.person_curp) == plain_photos[type(p), p.id]
        for p in photos
        if (type(p), p.id) in plain_photos
    )
