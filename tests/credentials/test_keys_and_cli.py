"""Signing keys at rest and the `salud credentials` commands."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from salud.cli.main import app
from salud.config import Settings
from salud.credentials import signing
from salud.credentials.claims import to_cbor
from salud.credentials.models import SigningKey
from salud.credentials.verify import verify
from salud.errors import InvalidInput
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


async def test_rotating_and_withdrawing_keys_at_the_shell_are_audited(
    cli_env: CliRunner, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Both commands are administration: recorded with who ran them (`cli:<user>`) and why,
    as disabling an account is. A key is named as `salud credentials keys` lists it (hex) or
    as the JWKS publishes it (base64url)."""
    from salud.access.models import AuditEvent

    def run(*args: str) -> Result:
        return cli_env.invoke(app, ["credentials", *args])

    first = await asyncio.to_thread(run, "rotate-key", "--reason", "puesta en marcha")
    assert first.exit_code == 0, first.output
    second = await asyncio.to_thread(run, "rotate-key")  # the reason has a default
    assert second.exit_code == 0, second.output
    async with sessions() as session:
        rows = (await session.scalars(select(SigningKey).order_by(SigningKey.id))).all()
    retired, current = rows[0].kid, rows[1].kid
    assert rows[0].created_by.startswith("cli:")
    published = base64.urlsafe_b64encode(bytes.fromhex(retired)).rstrip(b"=").decode()
    assert len(published) == 11
    unexplained = await asyncio.to_thread(run, "withdraw-key", published)
    assert unexplained.exit_code != 0  # --reason is required
    done = await asyncio.to_thread(
        run, "withdraw-key", published, "--reason", "llave filtrada (incidente 7)"
    )
    assert done.exit_code == 0, done.output
    assert retired in done.output
    twice = await asyncio.to_thread(run, "withdraw-key", retired, "--reason", "otra vez")
    assert twice.exit_code == 2
    assert "ya fue retirada" in twice.output
    for wrong in ("zz", "0" * 15, "A" * 12):
        bad = await asyncio.to_thread(run, "withdraw-key", wrong, "--reason", "prueba")
        assert bad.exit_code == 2, (wrong, bad.output)
        assert "kid" in bad.output, (wrong, bad.output)
    in_service = await asyncio.to_thread(
        run, "withdraw-key", current.upper(), "--reason", "llave filtrada"
    )
    assert in_service.exit_code == 0, in_service.output
    assert "rotate-key" in in_service.output  # none is in service now: it says what to do
    async with sessions() as session:
        entries = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.actor, AuditEvent.subject_id,
                       AuditEvent.detail).order_by(AuditEvent.seq)
            )
        ).all()  # fmt: skip
        withdrawn = (await session.scalars(select(SigningKey.withdrawn_at))).all()
    assert [(a, s, (d or {}).get("reason")) for a, _, s, d in entries] == [
        ("credentials:key:rotate", retired, "puesta en marcha"),
        ("credentials:key:rotate", current, "rotación de la llave de firma"),
        ("credentials:key:withdraw", retired, "llave filtrada (incidente 7)"),
        ("credentials:key:withdraw", current, "llave filtrada"),
    ]
    assert all(actor.startswith("cli:") for _, actor, _, _ in entries)
    assert all(w is not None for w in withdrawn)


def test_kids_are_taken_in_hex_and_in_base64url() -> None:
    raw = bytes.fromhex("00ff10e3a4b5c6d7")
    b64 = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert signing.kid_hex(b64) == signing.kid_hex("00FF10E3A4B5C6D7") == raw.hex()
    assert signing.kid_hex(f" {raw.hex()} ") == raw.hex()
    for wrong in ("", "00ff", b64 + "A", "00ff10e3a4b5c6dz"):
        with pytest.raises(InvalidInput) as caught:
            signing.kid_hex(wrong)
        assert caught.value.problems[0].field == "kid"


def test_the_offline_command_tells_a_statement_with_no_institution(tmp_path: Path) -> None:
    """`salud credentials verify` on a digital card whose statement names no institution:
    valid identity, "sin derechohabiencia vigente", never "derechohabiencia al …"."""
    from dataclasses import replace as replaced
    from datetime import UTC, datetime

    from salud.credentials.claims import Entitlement
    from tests.credentials.keys import card_text, digital, keyset, make_key

    key, public = make_key()
    now = datetime.now(UTC).replace(microsecond=0)
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(keyset(public).to_jwks()))
    runner = CliRunner()
    said = {}
    for name, codes in (("none", ()), ("imss", (2,))):
        card = replaced(digital(as_of=now), entitlement=Entitlement(now, codes, None))
        done = runner.invoke(
            app, ["credentials", "verify", card_text(key, card), "--keys", str(jwks)]
        )
        assert done.exit_code == 0, done.output
        said[name] = " ".join(done.output.split())
    assert "VÁLIDA (identidad; sin derechohabiencia vigente al" in said["none"]
    assert "derechohabiencia al" not in said["none"]
    assert "VÁLIDA (derechohabiencia al" in said["imss"]
