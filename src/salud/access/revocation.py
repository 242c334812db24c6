"""Ending access before a token expires: signing out, and disabling an account or a machine
client.

Bearer tokens are checked in process (no database round trip per request, `tokens.py`), so
each process keeps two sets it reads from the database every few seconds: the ids of tokens
signed out (`revoked_tokens`, kept until the token would have expired) and the subjects of
disabled accounts and clients. The process that signs a token out refuses it at once; the
others within `revocation_refresh_seconds`. Disabling, enabling, unlocking and a new second
factor are recorded in the audit log (`access:account:*`, `access:client:*`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditEntry
from salud.access.audit_tx import record_at_commit
from salud.access.models import Account, ApiClient, RevokedToken
from salud.access.permissions import Role
from salud.access.service import new_totp
from salud.access.tokens import TokenService
from salud.errors import NotFound, Unauthorized
from salud.kit.clock import utcnow
from salud.kit.sealing import Keyring
from salud.storage.engine import is_unique_violation

log = structlog.get_logger(__name__)


async def sign_out(session: AsyncSession, tokens: TokenService, token: str) -> bool:
    """End a token now: refused here at once, in every process within seconds. False when it
    was not a valid token (nothing to end)."""
    try:
        jti, subject, expires = tokens.identify(token)
    except Unauthorized:
        return False
    if not jti:
        return False
    tokens.revoke_here(jti)
    exists = await session.scalar(select(RevokedToken.id).where(RevokedToken.jti == jti))
    if exists is None:
        session.add(RevokedToken(jti=jti, subject=subject[:100], revoked_at=utcnow(),
                                 expires_at=datetime.fromtimestamp(expires, UTC)))  # fmt: skip
        try:
            await session.flush()
        except IntegrityError as exc:  # signed out twice at once: once is enough
            if not is_unique_violation(exc):
                raise
            await session.rollback()
    return True


async def load(session: AsyncSession) -> tuple[frozenset[str], frozenset[str]]:
    """(token ids signed out and not yet expired, subjects disabled)."""
    now = utcnow()
    revoked = await session.scalars(select(RevokedToken.jti).where(RevokedToken.expires_at > now))
    accounts = await session.scalars(select(Account.id).where(Account.active.is_(False)))
    clients = await session.scalars(select(ApiClient.client_id).where(ApiClient.active.is_(False)))
    disabled = {f"account:{a}" for a in accounts} | {f"client:{c}" for c in clients}
    return frozenset(revoked), frozenset(disabled)


async def refresh(sessions: async_sessionmaker[AsyncSession], tokens: TokenService) -> None:
    """Read the revocations into this process (and forget the rows of tokens long expired)."""
    async with sessions() as session, session.begin():
        revoked, disabled = await load(session)
        stale = utcnow() - timedelta(hours=1)
        await session.execute(delete(RevokedToken).where(RevokedToken.expires_at < stale))
    tokens.apply_revocations(revoked, disabled)


async def keep_fresh(
    sessions: async_sessionmaker[AsyncSession], tokens: TokenService, every: float
) -> None:
    """The lifespan's task: refresh every `every` seconds until cancelled. A failed read
    keeps the last revocations known (and is logged); the next one tries again."""
    while True:
        await asyncio.sleep(every)
        try:
            await refresh(sessions, tokens)
        except Exception:  # a database hiccup must not end the task
            log.warning("revocations.refresh_failed", exc_info=True)


# --- accounts and clients (salud accounts / salud clients) -------------------------------


@dataclass(frozen=True, slots=True)
class Operator:
    """Who runs an administration command (recorded): the system's operator at a shell."""

    name: str
    audit_key: bytes
    reason: str


def _record(session: AsyncSession, who: Operator, action: str, kind: str, subject: str) -> None:
    entry = AuditEntry(actor=f"cli:{who.name}", role=Role.SYSTEM_ADMIN.value, action=action,
                       subject_type=kind, subject_id=subject, purpose="administracion",
                       detail={"reason": who.reason})  # fmt: skip
    record_at_commit(session, who.audit_key, [entry])


async def _account(session: AsyncSession, username: str) -> Account:
    found = await session.scalar(
        select(Account).where(Account.username == username).with_for_update()
    )
    if found is None:
        raise NotFound(f"no hay ninguna cuenta «{username}»")
    return found


async def set_account_active(
    session: AsyncSession, username: str, active: bool, who: Operator
) -> None:
    """Disable (every token of the account is refused within seconds, and it cannot sign
    in) or enable again."""
    account = await _account(session, username)
    account.active = active
    verb = "enable" if active else "disable"
    _record(session, who, f"access:account:{verb}", "account", username)


async def unlock_account(session: AsyncSession, username: str, who: Operator) -> None:
    """End a lockout now (a staff member who forgot, then remembered)."""
    account = await _account(session, username)
    account.failed_attempts, account.locked_until = 0, None
    _record(session, who, "access:account:unlock", "account", username)


async def new_second_factor(
    session: AsyncSession, username: str, ring: Keyring, who: Operator
) -> str:
    """A new TOTP secret (a lost phone): the old one stops working; its provisioning URI."""
    account = await _account(session, username)
    account.totp_secret_sealed, uri = new_totp(username, ring)
    account.totp_last_step = None
    _record(session, who, "access:account:totp", "account", username)
    return uri


async def set_client_active(
    session: AsyncSession, client_id: str, active: bool, who: Operator
) -> None:
    """Disable a machine client (a leaked secret): its tokens are refused within seconds."""
    changed = await session.execute(
        update(ApiClient).where(ApiClient.client_id == client_id).values(active=active)
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"no hay ningún sistema con client_id «{client_id}»")
    verb = "enable" if active else "disable"
    _record(session, who, f"access:client:{verb}", "client", client_id)


async def all_clients(session: AsyncSession) -> list[ApiClient]:
    return list(await session.scalars(select(ApiClient).order_by(ApiClient.client_id)))
