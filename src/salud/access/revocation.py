"""Ending access before a token expires: signing out, and disabling an account or a machine
client, or giving it a new second factor.

Bearer tokens are checked in process (no database round trip per request, `tokens.py`), so
each process keeps what is revoked and reads it from the database every few seconds
(`revocations`): sessions signed out (every token of the session, those a page renewal made
included) and, per account or client, the instant up to which its tokens are void; plus the
accounts and clients disabled. The process that signs a session out refuses it at once; the
others within `revocation_refresh_seconds`. Disabling, enabling, unlocking and a new second
factor are recorded in the audit log (`access:account:*`, `access:client:*`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditEntry
from salud.access.audit_tx import record_at_commit
from salud.access.models import Account, ApiClient, Revocation
from salud.access.permissions import Role
from salud.access.service import new_totp
from salud.access.tokens import Revoked, TokenService
from salud.errors import NotFound, Unauthorized
from salud.kit.clock import utcnow
from salud.kit.sealing import Keyring
from salud.storage.engine import is_unique_violation

log = structlog.get_logger(__name__)
# Expired revocations are deleted at most this often by each process (not at every read).
PURGE_EVERY = timedelta(minutes=10)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def sign_out(
    session: AsyncSession, tokens: TokenService, token: str, max_session_seconds: int
) -> bool:
    """End the token's session now: every token of it (a renewed one, a copy) is refused,
    here at once and in every process within seconds. False when it was not a valid token."""
    try:
        hit = tokens.identify(token)
    except Unauthorized:
        return False
    if not hit.sid:
        return False
    # The last token the session could have: its limit if it is a page session (renewed).
    until = max(hit.expires, hit.signed_in_at + max_session_seconds if hit.page else 0)
    tokens.revoke_here(hit.sid, until)
    exists = await session.scalar(select(Revocation.id).where(Revocation.sid == hit.sid))
    if exists is None:
        session.add(Revocation(sid=hit.sid, subject=hit.principal.subject[:100],
                               revoked_at=utcnow(), expires_at=_at(until)))  # fmt: skip
        try:
            await session.flush()
        except IntegrityError as exc:  # signed out twice at once: once is enough
            if not is_unique_violation(exc):
                raise
            await session.rollback()
    return True


def void_earlier_tokens(session: AsyncSession, subject: str, keep_seconds: float) -> None:
    """Every token of `subject` issued up to now is void (a disabled account's stay void
    once it is enabled again; a lost phone's second factor ends its sessions)."""
    now = utcnow()
    session.add(Revocation(sid=None, subject=subject, revoked_at=now,
                           expires_at=now + timedelta(seconds=keep_seconds)))  # fmt: skip


# A later read goes back this far before the previous one began: a sign-out whose short
# transaction began earlier but committed after that read is still seen.
OVERLAP = timedelta(minutes=1)


async def load(session: AsyncSession, since: datetime | None = None) -> Revoked:
    """What is revoked now: the sessions signed out since `since` (each process reads only
    what is recent; all of them the first time), every subject's cutoff and the disabled
    subjects."""
    now = utcnow()
    live = Revocation.expires_at > now
    recent = [Revocation.revoked_at >= since] if since is not None else []
    rows = await session.execute(
        select(Revocation.sid, Revocation.expires_at).where(
            live, Revocation.sid.is_not(None), *recent
        )
    )
    cutoffs = await session.execute(
        select(Revocation.subject, func.max(Revocation.revoked_at))
        .where(live, Revocation.sid.is_(None))
        .group_by(Revocation.subject)
    )
    accounts = await session.scalars(select(Account.id).where(Account.active.is_(False)))
    clients = await session.scalars(select(ApiClient.client_id).where(ApiClient.active.is_(False)))
    return Revoked(
        sessions={sid: until.timestamp() for sid, until in rows if sid},
        subjects={subject: at.timestamp() for subject, at in cutoffs},
        disabled=frozenset({f"account:{a}" for a in accounts} | {f"client:{c}" for c in clients}),
    )


async def refresh(
    sessions: async_sessionmaker[AsyncSession], tokens: TokenService, *, purge: bool = False
) -> None:
    """Read what is new into this process; with `purge`, forget the expired revocations."""
    began = utcnow()
    last = tokens.revocations_read
    async with sessions() as session, session.begin():
        revoked = await load(session, None if last is None else last - OVERLAP)
        if purge:
            await session.execute(delete(Revocation).where(Revocation.expires_at < utcnow()))
    tokens.apply_revocations(revoked)
    tokens.revocations_read = began


async def keep_fresh(
    sessions: async_sessionmaker[AsyncSession], tokens: TokenService, every: float
) -> None:
    """The lifespan's task: refresh every `every` seconds until cancelled. A failed read
    keeps the last revocations known (and is logged); the next one tries again."""
    last_purge = datetime.min.replace(tzinfo=UTC)
    while True:
        await asyncio.sleep(every)
        purge = utcnow() - last_purge >= PURGE_EVERY
        try:
            await asyncio.wait_for(refresh(sessions, tokens, purge=purge), timeout=30)
        except Exception:  # a database hiccup must not end the task
            log.warning("revocations.refresh_failed", exc_info=True)
        else:
            if purge:
                last_purge = utcnow()


# --- accounts and clients (salud accounts / salud clients) -------------------------------


@dataclass(frozen=True, slots=True)
class Operator:
    """Who runs an administration command (recorded): the system's operator at a shell."""

    name: str
    audit_key: bytes
    reason: str
    # How long a subject's void tokens could still be presented: a session's limit plus a
    # token's life (what a revocation of the subject is kept for).
    keep_seconds: float = 13 * 3600


def record_admin(
    session: AsyncSession, who: Operator, action: str, kind: str, subject: str
) -> None:
    """An administration change, in the audit log with its transaction."""
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
    in) or enable again (the tokens it had before stay void: it signs in anew)."""
    account = await _account(session, username)
    account.active = active
    if not active:
        void_earlier_tokens(session, f"account:{account.id}", who.keep_seconds)
    verb = "enable" if active else "disable"
    record_admin(session, who, f"access:account:{verb}", "account", username)


async def unlock_account(session: AsyncSession, username: str, who: Operator) -> None:
    """End a lockout now (a staff member who forgot, then remembered)."""
    account = await _account(session, username)
    account.failed_attempts, account.locked_until = 0, None
    record_admin(session, who, "access:account:unlock", "account", username)


async def new_second_factor(
    session: AsyncSession, username: str, ring: Keyring, who: Operator
) -> str:
    """A new TOTP secret (a lost phone): the old one stops working; its provisioning URI."""
    account = await _account(session, username)
    account.totp_secret_sealed, uri = new_totp(username, ring)
    account.totp_last_step = None
    void_earlier_tokens(session, f"account:{account.id}", who.keep_seconds)  # ends sessions
    record_admin(session, who, "access:account:totp", "account", username)
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
    if not active:
        void_earlier_tokens(session, f"client:{client_id}", who.keep_seconds)
    verb = "enable" if active else "disable"
    record_admin(session, who, f"access:client:{verb}", "client", client_id)


async def all_clients(session: AsyncSession) -> list[ApiClient]:
    return list(await session.scalars(select(ApiClient).order_by(ApiClient.client_id)))
