"""All SQL of accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.models import Account


async def by_username(
    session: AsyncSession, username: str, *, for_update: bool = False
) -> Account | None:
    stmt = select(Account).where(Account.username == username)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def exists(session: AsyncSession, username: str) -> bool:
    found = await session.execute(select(Account.id).where(Account.username == username))
    return found.first() is not None


async def record_failure(
    session: AsyncSession, account_id: int, max_failures: int, now: datetime, lock_until: datetime
) -> None:
    """One more failure, counted in the database (not from what was read): the account locks
    until `lock_until` once the count reaches `max_failures`, and a failure never clears a
    lock another attempt has just set. A lock that has expired starts the count again: one
    guess every lockout period must not keep an account locked for good."""
    expired = and_(Account.locked_until.is_not(None), Account.locked_until <= now)
    failures = case((expired, 1), else_=Account.failed_attempts + 1)
    await session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(
            failed_attempts=failures,
            locked_until=case(
                (failures >= max_failures, lock_until),
                (expired, None),
                else_=Account.locked_until,
            ),
        )
    )


async def record_success(
    session: AsyncSession, account_id: int, totp_step: int | None = None
) -> None:
    values: dict[str, object] = {"failed_attempts": 0, "locked_until": None}
    if totp_step is not None:  # the code's time step, never accepted again
        values["totp_last_step"] = totp_step
    await session.execute(update(Account).where(Account.id == account_id).values(**values))


async def with_sealed_secrets(session: AsyncSession) -> Sequence[Account]:
    found = await session.execute(select(Account).where(Account.totp_secret_sealed.is_not(None)))
    return found.scalars().all()


async def at_module(session: AsyncSession, module_code: str) -> Sequence[Account]:
    found = await session.execute(
        select(Account).where(Account.module_code == module_code).order_by(Account.username)
    )
    return found.scalars().all()


DEMO_SUFFIX = ".demo"  # every demonstration account's username ends so (salud demo load)


async def demo_usernames(session: AsyncSession) -> list[str]:
    """The demonstration accounts present (a production database must have none)."""
    stmt = select(Account.username).where(Account.username.endswith(DEMO_SUFFIX, autoescape=True))
    return list((await session.execute(stmt.order_by(Account.username))).scalars())
