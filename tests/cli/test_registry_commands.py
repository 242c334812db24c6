"""`salud persons import` and `salud audit show`, as the registry's operators run them: an
import ends with its report (never a traceback), and reading someone's log is on that log."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.access import audit_chain
from salud.access.models import AuditEvent
from salud.cli.main import app
from salud.config import Settings
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


async def test_an_import_with_a_padded_repeat_and_a_unit_outside_the_catalog_reports_them(
    cli_env: CliRunner, tmp_path: Path
) -> None:
    doc, other = person_doc(), person_doc(assigned_clues="HGIMB999999")
    path = tmp_path / "p.ndjson"
    lines = [person_doc(), doc, {**doc, "curp": doc["curp"] + " "}, other]
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in lines))
    result = await asyncio.to_thread(cli_env.invoke, app, ["persons", "import", str(path), "-q"])
    assert result.exit_code == 0, (result.output, result.exception)
    said = " ".join(result.output.split())
    assert "nuevas 2" in said
    assert "rechazadas 2" in said
    assert "línea 3: curp: la CURP no lleva espacios" in said
    assert "línea 4: assigned_clues: HGIMB999999 no está en el catálogo CLUES" in said


async def test_audit_show_is_recorded_on_the_persons_log(
    cli_env: CliRunner, client: httpx.AsyncClient, settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    shown = await asyncio.to_thread(cli_env.invoke, app, ["audit", "show", "--curp", doc["curp"]])
    assert shown.exit_code == 0, shown.output
    assert "Accesos a los datos de" in shown.output
    stmt = select(AuditEvent.actor, AuditEvent.role, AuditEvent.purpose).where(
        AuditEvent.person_curp == doc["curp"], AuditEvent.action == "access:person-log:read"
    )
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    assert [tuple(r) for r in rows] == [
        (f"cli:{getpass.getuser()}", "system_admin", "administracion")
    ]
    key = settings.audit_key.get_secret_value().encode()
    assert (await audit_chain.verify(sessions, key)).ok
