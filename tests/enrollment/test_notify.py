"""Messages to people and the end of the day: a received batch tells each holder, the person
reads it on their page, the sender drains the outbox once, and missed appointments close."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.access.permissions import Role
from salud.cli.main import app
from salud.enrollment.models import Appointment, Notification
from salud.kit.clock import today_mx
from tests.conftest import TokenFor
from tests.enrollment.conftest import MODULE, Drive, E
from tests.enrollment.test_enrollment import enroll_adult
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


async def test_the_holder_is_told_and_the_outbox_drains_once(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession], cli_env: CliRunner,
) -> None:  # fmt: skip
    receipt = await enroll_adult(anonymous, drive, 51)
    op = drive.operator
    code = (await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE},
                                 headers=op)).json()["code"]  # fmt: skip
    assert (await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)).is_success
    for step in ("shipped", "received"):
        await anonymous.post(f"{E}/print-batches/{code}/status", json={"status": step}, headers=op)
    me = token_for(Role.CITIZEN, curp=receipt["curp"])
    mine = await anonymous.get(f"{E}/me/notifications", headers=me)
    assert mine.status_code == 200, mine.text
    [notice] = mine.json()
    assert notice["kind"] == "card_ready"
    assert notice["sent_at"] is None
    assert "Módulo Centro de Salud Pachuca" in notice["message"]
    staff = await anonymous.get(f"{E}/me/notifications", headers=op)
    assert staff.status_code == 403  # staff have no messages of their own
    first = await asyncio.to_thread(cli_env.invoke, app, ["enrollment", "notify"])
    assert first.exit_code == 0, first.output
    assert "1 avisos enviados" in first.output
    again = await asyncio.to_thread(cli_env.invoke, app, ["enrollment", "notify"])
    assert "0 avisos enviados" in again.output
    async with sessions() as s:
        sent = (await s.execute(select(Notification.sent_at))).scalars().all()
    assert len(sent) == 1
    assert sent[0] is not None


async def test_close_day_marks_missed_appointments(
    anonymous: httpx.AsyncClient, drive: Drive, sessions: async_sessionmaker[AsyncSession],
    cli_env: CliRunner,
) -> None:  # fmt: skip
    day = drive.next_open_day()
    folios = []
    for _ in range(3):
        body = {"curp": person_doc()["curp"], "module_code": MODULE, "day": day.isoformat()}
        booked = await anonymous.post(f"{E}/appointments", json=body)
        folios.append(booked.json()["folio"])
    async with sessions() as s, s.begin():  # two of the days pass
        await s.execute(update(Appointment).where(Appointment.folio.in_(folios[:2]))
                        .values(day=today_mx() - timedelta(days=2)))  # fmt: skip
    result = await asyncio.to_thread(cli_env.invoke, app, ["enrollment", "close-day"])
    assert result.exit_code == 0, result.output
    assert "2 citas" in result.output
    async with sessions() as s:
        states = dict((await s.execute(select(Appointment.folio, Appointment.status))).all())
    assert [states[f] for f in folios] == ["no_show", "no_show", "booked"]
