"""Ending access before a token expires: signing out ends the token itself (in this process at
once, in the others at their next read of the revocations), and an account or a machine
client disabled from the command line loses every token it holds. Each administration change
is in the audit log with who ran it and why."""

from __future__ import annotations

import asyncio
import re

import httpx
import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.access import clients, revocation
from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import Revoked, TokenService
from salud.cli.main import app as cli
from salud.config import Settings
from tests.access.test_sign_in import PASSWORD, _staff

pytestmark = pytest.mark.db


async def _signed_in(anonymous: httpx.AsyncClient, secret: str, code: str | None = None) -> str:
    body = {"username": "ana.operadora", "password": PASSWORD,
            "totp": code or pyotp.TOTP(secret).now()}  # fmt: skip
    answer = await anonymous.post("/api/v1/auth/token", json=body)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _other_process(settings: Settings) -> TokenService:
    """Another server process: same secret, its own cache and revocations."""
    return TokenService(settings.token_secret.get_secret_value(), settings.token_ttl_seconds)


async def _actions(sessions: async_sessionmaker[AsyncSession], subject: str) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.subject_id == subject)
            .order_by(AuditEvent.seq)
        )  # fmt: skip
        return list(rows)


async def test_signing_out_ends_the_token_everywhere(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    token = await _signed_in(anonymous, await _staff(sessions, settings))
    other = _other_process(settings)
    await revocation.refresh(sessions, other)  # its first read: everything (nothing yet)
    assert other.principal(token).username == "ana.operadora"  # cached there too
    assert (await anonymous.get("/api/v1/auth/me", headers=_as(token))).status_code == 200
    out = await anonymous.post("/api/v1/auth/sign-out", headers=_as(token))
    assert out.status_code == 204, out.text
    after = await anonymous.get("/api/v1/auth/me", headers=_as(token))
    assert after.status_code == 401  # in this process, at once
    assert "sesión se cerró" in after.json()["detail"]
    await revocation.refresh(sessions, other)  # its next read: what is new since
    with pytest.raises(Exception, match="sesión se cerró"):
        other.principal(token)
    again = await anonymous.post("/api/v1/auth/sign-out", headers=_as(token))
    assert again.status_code == 401  # nothing left to end


async def test_signing_out_ends_every_token_of_the_session(
    anonymous: httpx.AsyncClient, settings: Settings
) -> None:
    """A page session renewed while used has several tokens (one per renewal, same session):
    signing out with the newest ends the older copies too, and no copy can renew itself."""
    server = anonymous._transport.app  # type: ignore[attr-defined]
    service: TokenService = server.state.tokens
    who = Principal("account:41", "recepcion.web", Role.VERIFIER, 3)
    first = service.issue(who, page=True)
    seen = service.seen(first)
    renewed = service.issue(who, session=(seen.sid, seen.signed_in_at), page=True)
    assert (await anonymous.post("/api/v1/auth/sign-out", headers=_as(renewed))).status_code == 204
    assert (await anonymous.get("/api/v1/auth/me", headers=_as(first))).status_code == 401
    assert service.renewed(first, 12 * 3600) is None
    # A read of the database that began before the sign-out committed does not bring it back.
    service.apply_revocations(Revoked())
    assert (await anonymous.get("/api/v1/auth/me", headers=_as(first))).status_code == 401
    # A page with the ended session: its "Salir" still clears the phone.
    anonymous.cookies.set("salud_session", first)
    out = await anonymous.post("/salir", headers={"Sec-Fetch-Site": "same-origin"})
    assert out.status_code == 303
    assert out.headers["clear-site-data"] == '"cache", "storage"'
    assert 'salud_session=""' in out.headers["set-cookie"]


async def test_guesses_sent_at_once_spend_the_address_limit(anonymous: httpx.AsyncClient) -> None:
    """Failures count, whenever they end: a burst sent at once (bounded by the hashes the
    server runs at once) leaves the address waiting afterwards."""
    guess = {"username": "nadie", "password": "lo-que-sea-123", "totp": "000000"}
    answers = await asyncio.gather(
        *(anonymous.post("/api/v1/auth/token", json=guess) for _ in range(25))
    )
    assert {a.status_code for a in answers} <= {401, 429}
    after = await anonymous.post("/api/v1/auth/token", json=guess)
    assert after.status_code == 429
    assert int(after.headers["retry-after"]) >= 1


async def test_the_web_sign_out_ends_the_session_token(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """A copy of the session cookie (another tab, or one taken from the browser) is no good
    once the person signs out."""
    token = await _signed_in(anonymous, await _staff(sessions, settings))
    anonymous.cookies.set("salud_session", token)
    page = await anonymous.get("/verificar")
    assert page.status_code == 200
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found is not None
    out = await anonymous.post(
        "/salir", data={"csrf": found.group(1)}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert out.status_code == 303
    anonymous.cookies.clear()
    assert (await anonymous.get("/api/v1/auth/me", headers=_as(token))).status_code == 401


async def test_a_disabled_account_loses_its_tokens_and_cannot_sign_in(
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    cli_env: CliRunner,
) -> None:
    secret = await _staff(sessions, settings)
    token = await _signed_in(anonymous, secret)

    def run(*args: str) -> str:
        result = cli_env.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    no_reason = await asyncio.to_thread(
        cli_env.invoke, cli, ["accounts", "disable", "ana.operadora"]
    )
    assert no_reason.exit_code == 2  # why is required (it goes to the audit log)
    await asyncio.to_thread(
        run, "accounts", "disable", "ana.operadora", "--reason", "dejó el puesto"
    )
    server = anonymous._transport.app  # type: ignore[attr-defined]
    await revocation.refresh(sessions, server.state.tokens)  # the server's next read
    assert (await anonymous.get("/api/v1/auth/me", headers=_as(token))).status_code == 401
    body = {"username": "ana.operadora", "password": PASSWORD, "totp": pyotp.TOTP(secret).now()}
    assert (await anonymous.post("/api/v1/auth/token", json=body)).status_code == 401
    await asyncio.to_thread(run, "accounts", "enable", "ana.operadora", "--reason", "volvió")
    await revocation.refresh(sessions, server.state.tokens)
    # Enabled again, it signs in anew: the tokens it held before stay void.
    assert (await anonymous.get("/api/v1/auth/me", headers=_as(token))).status_code == 401
    # A new second factor (a lost phone): the old secret's codes no longer sign in.
    uri = await asyncio.to_thread(
        run, "accounts", "new-totp", "ana.operadora", "--reason", "perdió el teléfono"
    )
    new_secret = pyotp.parse_uri(uri.strip().splitlines()[-1]).secret
    assert new_secret != secret
    old = {**body, "totp": pyotp.TOTP(secret).now()}
    assert (await anonymous.post("/api/v1/auth/token", json=old)).status_code == 401
    assert await _signed_in(anonymous, new_secret)
    unknown = await asyncio.to_thread(
        cli_env.invoke, cli, ["accounts", "disable", "nadie", "--reason", "prueba"]
    )
    assert unknown.exit_code == 2
    assert "nadie" in unknown.output
    assert await _actions(sessions, "ana.operadora") == [
        "access:account:disable", "access:account:enable", "access:account:totp"
    ]  # fmt: skip


async def test_unlock_ends_a_lockout(
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    cli_env: CliRunner,
) -> None:
    secret = await _staff(sessions, settings)
    bad = {"username": "ana.operadora", "password": "mala-clave-123", "totp": "000000"}
    for _ in range(settings.max_failed_logins):
        assert (await anonymous.post("/api/v1/auth/token", json=bad)).status_code == 401
    good = {"username": "ana.operadora", "password": PASSWORD, "totp": pyotp.TOTP(secret).now()}
    assert (await anonymous.post("/api/v1/auth/token", json=good)).status_code == 401  # locked
    result = await asyncio.to_thread(
        cli_env.invoke, cli, ["accounts", "unlock", "ana.operadora", "--reason", "llamó a soporte"]
    )
    assert result.exit_code == 0, result.output
    assert (await anonymous.post("/api/v1/auth/token", json=good)).status_code == 200


async def test_a_disabled_client_loses_its_tokens(
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    cli_env: CliRunner,
) -> None:
    async with sessions() as session, session.begin():
        his = await clients.register(session, "HIS", ["system/Patient.read"], 2, None)
    form = {"grant_type": "client_credentials"}
    answer = await anonymous.post(
        "/api/v1/oauth/token", data=form, auth=(his.client_id, his.client_secret)
    )
    token = answer.json()["access_token"]
    assert (await anonymous.get("/api/v1/auth/me", headers=_as(token))).status_code == 200
    listed = await asyncio.to_thread(cli_env.invoke, cli, ["clients", "list"])
    assert listed.exit_code == 0, listed.output
    assert his.client_id in listed.output
    result = await asyncio.to_thread(
        cli_env.invoke, cli,
        ["clients", "disable", his.client_id, "--reason", "secreto filtrado"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    server = anonymous._transport.app  # type: ignore[attr-defined]
    await revocation.refresh(sessions, server.state.tokens)
    assert (await anonymous.get("/api/v1/auth/me", headers=_as(token))).status_code == 401
    again = await anonymous.post(
        "/api/v1/oauth/token", data=form, auth=(his.client_id, his.client_secret)
    )
    assert again.status_code == 401
    assert await _actions(sessions, his.client_id) == ["access:client:disable"]
