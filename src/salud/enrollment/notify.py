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
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.enrollment.models import Appointment, Notification
from salud.errors import Forbidden
from salud.kit.clock import utcnow

log = structlog.get_logger("salud.notify")


class NotificationRead(BaseModel):
    kind: str
    message: str
    created_at: datetime
    sent_at: datetime | None


class Sender(Protocol):
    name: str

    async def send(self, curp: str, kind: str, message: str) -> None: ...


class LogSender:
    name = "registro en bitácora (sin proveedor de SMS ni correo)"

    async def send(self, curp: str, kind: str, message: str) -> None:
        log.info("aviso", curp=curp, kind=kind, message=message)


async def mine(session: AsyncSession, caller: Caller) -> list[NotificationRead]:
    """The signed-in person's messages, newest first."""
    curp = caller.principal.curp
    if curp is None:
        raise Forbidden("solo la persona misma consulta sus avisos")
    await caller.allow(
        Permission.CREDENTIAL_READ, "enrollment:notification:read", "notification",
        person_curp=curp,
    )  # fmt: skip
    rows = await session.execute(
        select(Notification)
        .where(Notification.person_curp == curp)
        .order_by(Notification.id.desc())
        .limit(50)
    )
    await caller.record("enrollment:notification:read", "notification", person_curp=curp)
    return [
        NotificationRead(kind=n.kind, message=n.message, created_at=n.created_at, sent_at=n.sent_at)
        for n in rows.scalars()
    ]


async def drain(session: AsyncSession, sender: Sender, limit: int = 1000) -> int:
    """Send unsent messages (oldest first) and mark them sent; returns how many."""
    rows = (
        (
            await session.execute(
                select(Notification)
                .where(Notification.sent_at.is_(None))
                .order_by(Notification.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for n in rows:
        await sender.send(n.person_curp, n.kind, n.message)
        n.sent_at = utcnow()
    await session.flush()
    return len(rows)


async def close_day(session: AsyncSession, day: date) -> int:
    """Appointments still `booked` for a day before `day` become `no_show`."""
    result = await session.execute(
        update(Appointment)
        .where(Appointment.status == "booked", Appointment.day < day)
        .values(status="no_show", changed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
