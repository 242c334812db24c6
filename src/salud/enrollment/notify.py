"""Messages to people: the outbox (`notifications`), the citizen's own list, the sender that
drains the outbox, and the end-of-day close that marks missed appointments.

The sender is pluggable. The one in use here, `LogSender`, writes each message to the log
(CURP masked by kit/logging.py) and marks it sent: no SMS or e-mail provider is wired, which
is stated wherever it shows. The person also sees every message on their page (/avisos)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

import structlog
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.enrollment.models import Appointment, Notification
from salud.errors import Forbidden
from salud.identity import repository as persons
from salud.kit.ages import is_minor
from salud.kit.clock import today_mx, utcnow

log = structlog.get_logger("salud.notify")


class NotificationRead(BaseModel):
    kind: str
    message: str
    created_at: datetime
    sent_at: datetime | None
    # For a minor the person answers for: the minor's given names (the notice is theirs).
    for_minor: str | None = None


class Sender(Protocol):
    name: str

    async def send(self, curp: str, kind: str, message: str) -> None: ...


class LogSender:
    name = "registro en bitácora (sin proveedor de SMS ni correo)"

    async def send(self, curp: str, kind: str, message: str) -> None:
        log.info("aviso", curp=curp, kind=kind, message=message)


async def mine(session: AsyncSession, caller: Caller) -> list[NotificationRead]:
    """The signed-in person's messages, and those of the minors they answer for (a child
    has no sign-in: the parent picks the card up), newest first. The links are read from the
    registry now (in force, the person still a minor); each minor's are recorded on theirs."""
    curp = caller.principal.curp
    if curp is None:
        raise Forbidden("solo la persona misma consulta sus avisos")
    await caller.allow(
        Permission.CREDENTIAL_READ, "enrollment:notification:read", "notification",
        person_curp=curp,
    )  # fmt: skip
    today = today_mx()
    minors = {p.curp: p.given_names for p, _ in await persons.wards(session, curp)
              if is_minor(p.birth_date, today)}  # fmt: skip
    rows = await session.execute(
        select(Notification)
        .where(Notification.person_curp.in_([curp, *minors]))
        .order_by(Notification.id.desc())
        .limit(50)
    )
    found = [
        NotificationRead(kind=n.kind, message=n.message, created_at=n.created_at,
                         sent_at=n.sent_at, for_minor=minors.get(n.person_curp))
        for n in rows.scalars()
    ]  # fmt: skip
    await caller.record("enrollment:notification:read", "notification", person_curp=curp)
    if minors:
        await caller.record_persons("enrollment:notification:read", sorted(minors))
    return found


async def drain(
    sessions: async_sessionmaker[AsyncSession], sender: Sender, limit: int = 1000
) -> int:
    """Send unsent messages, oldest first, each marked sent in a transaction of its own;
    returns how many. A send that fails leaves its message unsent (the next run tries it
    again) and stops the run: those sent before it stay marked (in one transaction for the
    whole run, a failure rolled every mark back, and they all went out again). Another
    sender running at once takes other messages (SKIP LOCKED)."""
    sent = 0
    while sent < limit:
        async with sessions() as session, session.begin():
            n = await session.scalar(
                select(Notification)
                .where(Notification.sent_at.is_(None))
                .order_by(Notification.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if n is None:
                break
            await sender.send(n.person_curp, n.kind, n.message)
            n.sent_at = utcnow()
        sent += 1
    return sent


async def close_day(session: AsyncSession, day: date) -> int:
    """Appointments still `booked` for a day before `day` become `no_show`."""
    result = await session.execute(
        update(Appointment)
        .where(Appointment.status == "booked", Appointment.day < day)
        .values(status="no_show", changed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
