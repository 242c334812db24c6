"""The commands' own checks: logs without CURPs, a KEK rotation that carries on past a value
it cannot open, and options that are checked before anything is written."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.access import service
from salud.access.models import Account, ApiClient, AuditEvent
from salud.access.permissions import Role
from salud.access.schemas import AccountCreate
from salud.cli import serve
from salud.cli.main import app
from salud.config import Settings, get_settings
from salud.enrollment import notify
from salud.enrollment.models import Notification
from salud.kit.clock import utcnow
from salud.kit.sealing import Keyring, open_sealed
from tests.conftest import keyring_of
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db
PASSWORD = "Clave-de-prueba-2026"
TOTP_AAD = b"salud:account:totp"  # what access/service.py seals the TOTP secrets with


def one_line(result: Any) -> str:
    return " ".join(result.output.split())


async def test_notify_logs_no_full_curp(
    sessions: async_sessionmaker[AsyncSession], cli_env: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    curp = person_doc()["curp"]
    async with sessions() as s, s.begin():
        s.add(Notification(person_curp=curp, kind="card_ready", message="Su tarjeta está lista",
                           created_at=utcnow()))  # fmt: skip
    # A logger not yet cached (another test may have used the module's with another set-up).
    monkeypatch.setattr(notify, "log", structlog.get_logger("salud.notify"))
    result = await asyncio.to_thread(cli_env.invoke, app, ["enrollment", "notify"])
    assert result.exit_code == 0, result.output
    assert "1 avisos enviados" in result.output
    assert curp not in result.output
    assert f"{curp[:4]}**************" in result.stderr  # logged, masked, on stderr
    assert curp[:4] not in result.stdout


async def _account(sessions: async_sessionmaker[AsyncSession], username: str, ring: Keyring) -> int:
    data = AccountCreate(username=username, display_name=username, role=Role.AUDITOR,
                         password=PASSWORD)  # fmt: skip
    async with sessions() as s, s.begin():
        await service.create_account(s, data, ring)
        return int((await s.execute(select(Account.id).where(Account.username == username)))
                   .scalar_one())  # fmt: skip


async def test_rewrap_carries_on_past_a_value_it_cannot_open(
    sessions: async_sessionmaker[AsyncSession], cli_env: CliRunner, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    lost = Keyring.from_config("perdida", base64.b64encode(os.urandom(32)).decode())
    first = await _account(sessions, "auditora.uno", keyring_of(settings))
    bad = await _account(sessions, "auditora.perdida", lost)  # its KEK is in no keyring
    last = await _account(sessions, "auditora.dos", keyring_of(settings))
    new_kek = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("SALUD_KEK_ID", "2027")
    monkeypatch.setenv("SALUD_KEK", new_kek)
    monkeypatch.setenv("SALUD_OLD_KEKS", f"{settings.kek_id}:{settings.kek.get_secret_value()}")
    get_settings.cache_clear()
    result = await asyncio.to_thread(cli_env.invoke, app, ["keys", "rewrap", "--chunk", "1"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    said = one_line(result)
    assert "2 secretos" in said
    assert "1 valores sellados no se pudieron abrir" in said
    assert f"tabla accounts, id {bad}: la llave «perdida» no está en el llavero" in said
    only_new = Keyring.from_config("2027", new_kek)
    async with sessions() as s:
        sealed = dict((await s.execute(select(Account.id, Account.totp_secret_sealed))).all())
    for moved in (first, last):  # the rows before and after the bad one moved
        assert open_sealed(sealed[moved], only_new, TOTP_AAD)
    assert open_sealed(sealed[bad], lost, TOTP_AAD)  # the bad one is as it was


async def _clients(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(ApiClient))).scalar_one())


async def test_clients_create_checks_its_options(
    sessions: async_sessionmaker[AsyncSession], cli_env: CliRunner
) -> None:
    base = ["clients", "create", "--scope", "system/Patient.read"]
    for options, wrong in [
        (["--name", "HIS", "--institution", "999"], "--institution 999"),
        (["--name", "HIS", "--institution", "99"], "--institution 99"),  # «se ignora»
        (["--name", "HIS", "--clues", "zzz"], "--clues"),
        (["--name", "  "], "--name"),
    ]:
        result = await asyncio.to_thread(cli_env.invoke, app, base + options)
        assert result.exit_code == 2, (options, result.output)
        assert wrong in result.stderr, (options, result.stderr)
    assert await _clients(sessions) == 0
    good = ["--name", "HIS", "--institution", "2", "--clues", "hgims000010"]
    result = await asyncio.to_thread(cli_env.invoke, app, base + good)
    assert result.exit_code == 0, result.output
    async with sessions() as s:
        [client] = (await s.execute(select(ApiClient))).scalars().all()
        created = (
            await s.execute(select(AuditEvent.action, AuditEvent.actor, AuditEvent.subject_id))
        ).all()
    assert (client.institution_code, client.clues) == (2, "HGIMS000010")
    # Who registered a system that may read the record, and when: in the audit log.
    assert [(a, subject) for a, _, subject in created] == [
        ("access:client:create", client.client_id)
    ]
    assert created[0][1].startswith("cli:")


async def test_accounts_create_checks_its_options(
    sessions: async_sessionmaker[AsyncSession], cli_env: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SALUD_NEW_PASSWORD", PASSWORD)
    curp = person_doc()["curp"]
    wrong_digit = curp[:-1] + str((int(curp[-1]) + 1) % 10)
    base = ["accounts", "create", "--username", "persona.prueba", "--name", "Persona"]
    for options, wrong in [
        (["--role", "client"], "--role client"),
        (["--role", "citizen", "--curp", wrong_digit], "--curp"),
        (["--role", "citizen", "--curp", "ABCD123456EFGHIJ78"], "--curp"),
        (["--role", "auditor", "--institution", "999"], "--institution 999"),
    ]:
        result = await asyncio.to_thread(cli_env.invoke, app, base + options)
        assert result.exit_code == 2, (options, result.output)
        assert wrong in result.stderr, (options, result.stderr)
    async with sessions() as s:
        assert (await s.execute(select(func.count()).select_from(Account))).scalar_one() == 0
    result = await asyncio.to_thread(
        cli_env.invoke, app, [*base, "--role", "citizen", "--curp", curp]
    )
    assert result.exit_code == 0, result.output
    async with sessions() as s:
        created = (await s.execute(select(AuditEvent.action, AuditEvent.subject_id))).all()
    assert created == [("access:account:create", "persona.prueba")]


def test_serve_refuses_a_port_out_of_range(
    cli_env: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(serve.uvicorn, "run", lambda *a, **kw: started.append(kw))
    for port in ("99999", "0"):
        result = cli_env.invoke(app, ["serve", "--port", port])
        assert result.exit_code == 2, result.output
        assert "--port" in result.output
    assert started == []
    assert cli_env.invoke(app, ["serve", "--port", "8123"]).exit_code == 0
    assert started[0]["port"] == 8123
