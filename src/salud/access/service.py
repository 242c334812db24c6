"""Accounts and sign-in: Argon2 passwords, TOTP for staff, lockout after repeated failures."""

from __future__ import annotations

import hmac
import unicodedata
from datetime import timedelta

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import repository
from salud.access.models import Account
from salud.access.passwords import check_strength, hash_password, verify_password_off_loop
from salud.access.permissions import STAFF_ROLES, Role
from salud.access.principal import Principal
from salud.access.schemas import AccountCreate, AccountRead, SignIn
from salud.errors import Conflict, FieldProblem, InvalidInput, Unauthorized
from salud.kit.clock import utcnow
from salud.kit.sealing import Keyring, open_sealed, rewrap, seal
from salud.storage import locks

_TOTP_AAD = b"salud:account:totp"


def principal_of(account: Account) -> Principal:
    return Principal(
        subject=f"account:{account.id}",
        username=account.username,
        role=Role(account.role),
        institution_code=account.institution_code,
        clues=account.clues,
        curp=account.curp,
        module_code=account.module_code,
    )


def _read(account: Account) -> AccountRead:
    return AccountRead(
        username=account.username,
        display_name=account.display_name,
        role=Role(account.role),
        institution_code=account.institution_code,
        clues=account.clues,
        module_code=account.module_code,
        active=account.active,
        totp_enabled=account.totp_secret_sealed is not None,
    )


async def create_account(
    session: AsyncSession, data: AccountCreate, ring: Keyring
) -> tuple[AccountRead, str | None]:
    """Create an account; returns it and, when TOTP is on, the provisioning URI to show once."""
    weak = check_strength(data.password)
    if weak:
        raise InvalidInput.on("password", weak)
    if data.role in STAFF_ROLES and not data.totp:
        raise InvalidInput.on("totp", "el personal debe usar segundo factor (TOTP)")
    if (data.role is Role.CITIZEN) != (data.curp is not None):
        raise InvalidInput.on("curp", "una cuenta de ciudadano lleva su CURP, y solo ella")
    if await repository.exists(session, data.username):
        raise Conflict("ese nombre de usuario ya existe", [FieldProblem("username", "ya existe")])
    sealed, uri = new_totp(data.username, ring) if data.totp else (None, None)
    account = Account(
        username=data.username,
        display_name=data.display_name,
        role=data.role.value,
        institution_code=data.institution_code,
        clues=data.clues,
        module_code=data.module_code,
        curp=data.curp,
        password_hash=hash_password(data.password),
        totp_secret_sealed=sealed,
        failed_attempts=0,
        locked_until=None,
        active=True,
        created_at=utcnow(),
    )
    session.add(account)
    await session.flush()
    return _read(account), uri


def new_totp(username: str, ring: Keyring) -> tuple[bytes, str]:
    """A new TOTP secret: sealed for the account row, and its provisioning URI (the QR the
    staff member scans into their authenticator app, shown once)."""
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Salud Universal")
    return seal(secret.encode(), ring, _TOTP_AAD), uri


def totp_secret(account: Account, ring: Keyring) -> str | None:
    if account.totp_secret_sealed is None:
        return None
    return open_sealed(account.totp_secret_sealed, ring, _TOTP_AAD).decode()


async def authenticate(
    session: AsyncSession,
    data: SignIn,
    ring: Keyring,
    *,
    max_failures: int,
    lockout_seconds: int,
) -> Principal:
    """The principal for valid credentials. Wrong username, wrong password, wrong code and a
    locked account all answer the same 401 (no account enumeration); repeated failures lock
    the account for `lockout_seconds`."""
    # The account's row is locked until this attempt is counted: parallel guesses wait in
    # line and see the lockout the ones before them set, instead of all passing its check.
    account = await repository.by_username(session, data.username, for_update=True)
    now = utcnow()
    # Every failure, a locked account's included, is the same 401 after the same Argon2 work:
    # a distinct answer (or a faster one) would tell a guesser that the username exists. The
    # text says how the lockout works, for the staff member who is locked out.
    refused = Unauthorized(
        "usuario, contraseña o código incorrectos (tras "
        f"{max_failures} intentos fallidos la cuenta se bloquea "
        f"{max(1, lockout_seconds // 60)} min)"
    )
    if account is not None and account.locked_until is not None and account.locked_until > now:
        await verify_password_off_loop(None, data.password)
        raise refused
    stored = account.password_hash if account else None
    password_ok = await verify_password_off_loop(stored, data.password)
    code_ok, step = True, None
    if account is not None and password_ok:
        secret = totp_secret(account, ring)
        if secret is not None:
            step = totp_step(secret, data.totp, now.timestamp(), account.totp_last_step)
            code_ok = step is not None
    if account is None or not account.active or not password_ok or not code_ok:
        if account is not None:
            until = now + timedelta(seconds=lockout_seconds)
            await repository.record_failure(session, account.id, max_failures, now, until)
        # One answer for every failure: a distinct "code missing" would confirm a right
        # password to whoever does not hold the second factor.
        raise refused
    await repository.record_success(session, account.id, step)
    return principal_of(account)


def totp_step(secret: str, code: str | None, at: float, last_step: int | None) -> int | None:
    """The 30-second step a TOTP code belongs to, or None when it is not valid now: the
    previous, current or next step (clock drift), and only a step after the last one that
    signed in (a code seen over a shoulder, or replayed, is refused; RFC 6238 §5.2)."""
    if code is None:
        return None
    code = unicodedata.normalize("NFKC", code)  # fullwidth digits are digits, as pyotp reads
    if not (code.isascii() and code.isdigit()):  # other scripts' digits are not a code
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(at // totp.interval)
    for step in (now_step - 1, now_step, now_step + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * totp.interval), code):
            return step
    return None


async def rewrap_secrets(session: AsyncSession, ring: Keyring) -> int:
    """Re-wrap every sealed account secret under the current KEK (after a rotation). Only
    the data keys change; the secrets themselves are not re-encrypted. Returns how many."""
    moved = 0
    for account in await repository.with_sealed_secrets(session):
        assert account.totp_secret_sealed is not None
        new = rewrap(account.totp_secret_sealed, ring)
        if new != account.totp_secret_sealed:
            account.totp_secret_sealed = new
            moved += 1
    await session.flush()
    return moved


MODULE_ROLES = frozenset({Role.REGISTRATION_OPERATOR, Role.SUPERVISOR})


async def assign_module(
    session: AsyncSession, username: str, module_code: str | None
) -> AccountRead:
    """Bind an operator or supervisor account to a registration module (None: unbind). The
    binding takes effect at the account's next sign-in (tokens carry it). The account is
    held while checked (`locks.hold`: PostgreSQL's advisory lock, SQLite's write lock before
    the read): of two supervisors binding it to two modules at once, one waits and is
    refused, rather than the last write silently moving it."""
    await locks.hold(session, f"account:module:{username}", "accounts")
    account = await repository.by_username(session, username, for_update=True)
    if account is None:
        raise InvalidInput.on("username", "no existe esa cuenta")
    if Role(account.role) not in MODULE_ROLES:
        raise InvalidInput.on("username", "solo operadores y supervisores trabajan en un módulo")
    if module_code and account.module_code not in (None, module_code):
        raise Conflict(
            f"la cuenta trabaja en el módulo {account.module_code}: que ese módulo la libere",
            [FieldProblem("username", "asignada a otro módulo")],
        )
    account.module_code = module_code
    await session.flush()
    return _read(account)


async def staff_at_module(session: AsyncSession, module_code: str) -> list[AccountRead]:
    return [_read(a) for a in await repository.at_module(session, module_code)]
