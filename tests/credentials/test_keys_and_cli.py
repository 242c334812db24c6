"""Signing keys at rest and the `salud credentials` commands."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.cli.main import app
from salud.config import Settings
from salud.credentials import signing
from salud.credentials.claims import to_cbor
from salud.credentials.models import SigningKey
from salud.credentials.verify import verify
from salud.kit.clock import utcnow
from salud.kit.sealing import Keyring, SealError
from tests.conftest import keyring_of
from tests.credentials.keys import claims

pytestmark = pytest.mark.db


async def test_private_keys_are_sealed_and_survive_a_kek_rotation(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, signing_key: str
) -> None:
    new_kek = base64.b64encode(os.urandom(32)).decode()
    old = f"{settings.kek_id}:{settings.kek.get_secret_value()}"
    rotating = Keyring.from_config("2027", new_kek, old)
    async with sessions() as session, session.begin():
        assert await signing.rewrap_keys(session, rotating) == 1
    async with sessions() as session:
        row = (await session.execute(select(SigningKey))).scalar_one()
    assert row.private_key_sealed.startswith(b"S1")
    assert len(row.private_key_sealed) > 32 + 60
    # Only the new KEK is needed now: the signer opens the key and its cards verify.
    signer = signing.Signer(sessions, Keyring.from_config("2027", new_kek))
    # Issued now (the key entered service at the start of this test, not at a fixed date).
    issued = utcnow().replace(microsecond=0)
    card = claims(issued_at=issued, not_before=issued, expires_at=issued + timedelta(days=3650))
    text, kid = await signer.sign_text(to_cbor(card))
    assert kid.hex() == signing_key
    keys = await signer.keys()
    assert verify(text, keys, now=issued).claims == card
    stale = signing.Signer(sessions, keyring_of(settings))
    with pytest.raises(SealError):  # the old KEK alone no longer opens it
        await stale.sign_text(to_cbor(claims()))


async def test_a_withdrawn_key_leaves_the_published_set(
    sessions: async_sessionmaker[AsyncSession], signing_key: str
) -> None:
    async with sessions() as session, session.begin():
        await signing.withdraw(session, signing_key)
    async with sessions() as session:
        assert (await signing.published(session)).keys == {}


def test_rotate_list_and_verify_from_the_command_line(cli_env: CliRunner, tmp_path: Path) -> None:
    cli = cli_env
    first = cli.invoke(app, ["credentials", "rotate-key"])
    assert first.exit_code == 0, first.output
    second = cli.invoke(app, ["credentials", "rotate-key", "--alg", "ES256"])
    assert second.exit_code == 0, second.output
    listed = cli.invoke(app, ["credentials", "keys"])
    assert "en servicio" in listed.output
    assert "ES256" in listed.output
    bad = cli.invoke(app, ["credentials", "rotate-key", "--alg", "RSA"])
    assert bad.exit_code != 0
    gone = cli.invoke(app, ["credentials", "print", "--out", str(tmp_path / "lote.pdf")])
    assert gone.exit_code != 0  # print files come from the modules' print batches only
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps({"keys": []}))
    refused = cli.invoke(
        app, ["credentials", "verify", "NO ES UNA CREDENCIAL", "--keys", str(jwks)]
    )
    assert refused.exit_code == 1
    assert "not_zlib" in refused.output or "not_base45" in refused.output


async def test_a_card_signed_by_a_process_that_has_not_seen_the_rotation_verifies(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, signing_key: str
) -> None:
    """Another server process keeps its signing key cached for a while after a rotation
    (signing.CACHE_SECONDS): the retired key's window covers that while, so what it signs
    verifies instead of being refused forever as signed by an unknown key."""
    ring = keyring_of(settings)
    elsewhere = signing.Signer(sessions, ring)
    await elsewhere.sign_text(to_cbor(claims()))  # its key is cached now
    async with sessions() as session, session.begin():  # the rotation, from another process
        new_kid = await signing.rotate(session, ring, "admin")
    # Issued a few seconds after the rotation, while that process's cache still holds.
    issued = utcnow().replace(microsecond=0) + timedelta(seconds=10)
    card = claims(issued_at=issued, not_before=issued, expires_at=issued + timedelta(days=3650))
    text, kid = await elsewhere.sign_text(to_cbor(card))
    assert kid.hex() == signing_key != new_kid  # still the retired key, from the cache
    published = await signing.Signer(sessions, ring).keys()
    assert verify(text, published, now=issued).claims == card
    fresh, fresh_kid = await signing.Signer(sessions, ring).sign_text(to_cbor(card))
    assert fresh_kid.hex() == new_kid
    assert verify(fresh, published, now=issued).claims == card


async def test_rotations_at_the_same_moment_leave_one_key_in_service(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, signing_key: str
) -> None:
    """A double click on "rotate": the rotations run one after the other, so one key is in
    service afterwards and every other one is retired (still verifying its cards)."""
    import asyncio

    async def rotate() -> str:
        async with sessions() as session, session.begin():
            return await signing.rotate(session, keyring_of(settings), "admin")

    kids = await asyncio.gather(*(rotate() for _ in range(4)))
    async with sessions() as session:
        rows = (await session.execute(select(SigningKey))).scalars().all()
    in_service = [r.kid for r in rows if r.valid_to is None]
    assert len(rows) == 5
    assert len(in_service) == 1
    assert in_service[0] in kids


async def test_an_unknown_kid_reloads_the_key_set_at_most_once_a_second(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    signing_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This process cached the key set; another one rotated (directly in the database here).
    Asked for a fresher set, the signer reloads it, but not more often than RELOAD_SECONDS:
    a stream of forged kids cannot hammer the database."""
    ring = keyring_of(settings)
    here = signing.Signer(sessions, ring)
    cached = await here.keys()
    async with sessions() as session, session.begin():
        new_kid = bytes.fromhex(await signing.rotate(session, ring, "otro.proceso"))
    assert cached.get(new_kid) is None
    assert await here.keys() is cached  # within CACHE_SECONDS: the cached set
    monkeypatch.setattr(signing, "RELOAD_SECONDS", 3600.0)
    assert await here.fresher(cached) is None  # read too recently: no reload
    monkeypatch.setattr(signing, "RELOAD_SECONDS", 0.0)
    fresher = await here.fresher(cached)
    assert fresher is not None
    assert fresher.get(new_kid) is not None
    assert await here.keys() is fresher  # the cache holds the reloaded set
    assert await here.fresher(cached) is fresher  # an older set's holder gets the newer one
