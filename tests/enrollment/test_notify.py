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
from salud.enrollment import notify
from salud.enrollment.models import Appointment, Notification
from salud.kit.clock import today_mx, utcnow
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


async def test_a_minors_notice_reaches_the_parent_who_picks_the_card_up(
    client: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A young child has no sign-in, and a minor's card goes only to a linked parent or
    guardian: the notice that it is ready was addressed to the child alone, where no one
    read it. The parent now sees it, marked as the child's, while the link is in force."""
    parent, child, stranger = (person_doc(birth_date=b) for b in
                               ("1985-02-03", (today_mx() - timedelta(days=365 * 6)).isoformat(),
                                "1979-04-05"))  # fmt: skip
    for doc in (parent, child, stranger):
        assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    linked = await client.post(
        f"/api/v1/persons/{child['curp']}/guardians",
        json={"guardian_curp": parent["curp"], "relationship": "mother",
              "reason": "acta de nacimiento"},
    )  # fmt: skip
    assert linked.status_code == 201, linked.text
    async with sessions() as s, s.begin():
        s.add(Notification(person_curp=child["curp"], kind="card_ready",
                           message="Su credencial de salud está lista.",
                           created_at=utcnow(), sent_at=None))  # fmt: skip
    mother = token_for(Role.CITIZEN, curp=parent["curp"], username="madre")
    seen = (await client.get(f"{E}/me/notifications", headers=mother)).json()
    assert [(n["kind"], n["for_minor"]) for n in seen] == [("card_ready", child["given_names"])]
    other = token_for(Role.CITIZEN, curp=stranger["curp"], username="otra")
    assert (await client.get(f"{E}/me/notifications", headers=other)).json() == []
    me = token_for(Role.AUDITOR)
    log = (await client.get(f"/api/v1/persons/{child['curp']}/accesses", headers=me)).json()
    assert ("madre", "enrollment:notification:read") in {
        (e["actor"], e["action"]) for e in log["items"]
    }
    ended = await client.post(
        f"/api/v1/persons/{child['curp']}/guardians/{parent['curp']}/end",
        json={"reason": "resolución judicial"},
    )
    assert ended.status_code == 200, ended.text
    assert (await client.get(f"{E}/me/notifications", headers=mother)).json() == []


class _FailsOnSecond:
    name = "falla en el segundo (prueba)"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, curp: str, kind: str, message: str) -> None:
        if len(self.sent) == 1:
            raise ConnectionError("el proveedor no responde")
        self.sent.append(curp)


async def test_a_failed_send_keeps_what_was_sent_before_it_marked(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """One transaction for the whole run rolled every mark back when a send failed, so the
    messages already delivered went out again on the next run."""
    curps = [person_doc()["curp"] for _ in range(3)]
    async with sessions() as s, s.begin():
        for curp in curps:
            s.add(Notification(person_curp=curp, kind="card_ready", message="Lista.",
                               created_at=utcnow(), sent_at=None))  # fmt: skip
    sender = _FailsOnSecond()
    with pytest.raises(ConnectionError):
        await notify.drain(sessions, sender)
    async with sessions() as s:
        rows = (await s.execute(select(Notification.person_curp, Notification.sent_at))).all()
    marked = {curp: at for curp, at in rows}
    assert sender.sent == curps[:1]
    assert marked[curps[0]] is not None
    assert marked[curps[1]] is None
    assert marked[curps[2]] is None
