"""Sign-in: Argon2 passwords, TOTP for staff, lockout after repeated failures, tokens."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pyotp
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import service
from salud.access.models import Account
from salud.access.passwords import hash_password, verify_password
from salud.access.permissions import Role
from salud.access.schemas import AccountCreate
from salud.config import Settings
from salud.errors import InvalidInput
from salud.kit.clock import utcnow
from salud.kit.sealing import Keyring

pytestmark = pytest.mark.db

PASSWORD = "Contraseña-de-prueba-1"


def _ring(settings: Settings) -> Keyring:
    return Keyring.from_config(settings.kek_id, settings.kek.get_secret_value())


async def _staff(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, username: str = "ana.operadora"
) -> str:
    async with sessions() as session, session.begin():
        _, uri = await service.create_account(
            session,
            AccountCreate(
                username=username,
                display_name="Ana",
                role=Role.REGISTRATION_OPERATOR,
                password=PASSWORD,
                institution_code=10,
            ),
            _ring(settings),
        )
    assert uri is not None
    return pyotp.parse_uri(uri).secret


def test_argon2_hashes_verify_and_differ() -> None:
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b
    assert a.startswith("$argon2id$")
    assert verify_password(a, PASSWORD)
    assert not verify_password(a, PASSWORD + "x")
    assert not verify_password(None, PASSWORD)


async def test_totp_secret_is_sealed_at_rest(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    secret = await _staff(sessions, settings)
    async with sessions() as session:
        stored = (await session.execute(select(Account.totp_secret_sealed))).scalar_one()
    assert stored is not None
    assert secret.encode() not in stored


async def test_sign_in_with_password_and_totp_gives_a_working_token(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    secret = await _staff(sessions, settings)
    # The right password without the code answers as a wrong password does: it must not
    # confirm the password to someone without the second factor.
    no_code = await anonymous.post(
        "/api/v1/auth/token", json={"username": "ana.operadora", "password": PASSWORD}
    )
    wrong = await anonymous.post(
        "/api/v1/auth/token", json={"username": "ana.operadora", "password": PASSWORD + "x"}
    )
    assert no_code.status_code == wrong.status_code == 401
    assert no_code.json()["detail"] == wrong.json()["detail"]
    answer = await anonymous.post(
        "/api/v1/auth/token",
        json={"username": "ana.operadora", "password": PASSWORD, "totp": pyotp.TOTP(secret).now()},
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    me = await anonymous.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["role"] == "registration_operator"
    assert "person:create" in me.json()["permissions"]
    assert "audit:read" not in me.json()["permissions"]


async def test_a_totp_code_signs_in_once(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """RFC 6238 §5.2: a code seen over a shoulder, or replayed, does not sign in again; the
    next step's code does."""
    secret = await _staff(sessions, settings)
    totp = pyotp.TOTP(secret)
    at = utcnow().timestamp()

    async def sign_in(code: str) -> int:
        body = {"username": "ana.operadora", "password": PASSWORD, "totp": code}
        return (await anonymous.post("/api/v1/auth/token", json=body)).status_code

    # Digits as a phone may type them: another script's are not a code (a refusal, not an
    # error); fullwidth ones are digits, as pyotp reads them.
    arabic = totp.at(at).translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    assert await sign_in(arabic) == 401
    fullwidth = totp.at(at).translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    assert await sign_in(fullwidth) == 200
    assert await sign_in(totp.at(at)) == 401  # the same code again
    assert await sign_in(totp.at(at - 30)) == 401  # an older step, though within the drift
    assert await sign_in(totp.at(at + 30)) == 200  # the next step (a clock a little ahead)


@hypothesis_settings(max_examples=200, deadline=None)
@given(at=st.floats(min_value=1e9, max_value=4e9), offset=st.integers(-3, 3),
       last=st.one_of(st.none(), st.integers(0, 2 * 10**8)))  # fmt: skip
def test_totp_step_takes_one_of_three_steps_after_the_last(
    at: float, offset: int, last: int | None
) -> None:
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits
    totp = pyotp.TOTP(secret)
    asked = int(at // 30) + offset
    code = totp.at(asked * 30)
    step = service.totp_step(secret, code, at, last)
    if step is not None:  # accepted: within the drift, after the last, and the code's own
        assert abs(step - int(at // 30)) <= 1
        assert last is None or step > last
        assert totp.at(step * 30) == code
    if abs(offset) <= 1 and (last is None or asked > last):
        assert step is not None  # what may be accepted is
    assert service.totp_step(secret, None, at, last) is None


async def test_wrong_user_and_wrong_password_look_the_same(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await _staff(sessions, settings)
    unknown = await anonymous.post(
        "/api/v1/auth/token", json={"username": "nadie", "password": PASSWORD, "totp": "123456"}
    )
    wrong = await anonymous.post(
        "/api/v1/auth/token",
        json={"username": "ana.operadora", "password": "otra-cosa-123", "totp": "123456"},
    )
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]


async def test_repeated_failures_lock_the_account(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    secret = await _staff(sessions, settings)
    for _ in range(settings.max_failed_logins):
        bad = await anonymous.post(
            "/api/v1/auth/token",
            json={"username": "ana.operadora", "password": "mala-clave-123", "totp": "000000"},
        )
        assert bad.status_code == 401
    locked = await anonymous.post(
        "/api/v1/auth/token",
        json={"username": "ana.operadora", "password": PASSWORD, "totp": pyotp.TOTP(secret).now()},
    )
    # Locked: even the right password and code are refused, with the answer an unknown
    # username gets (a distinct one would tell that the account exists).
    unknown = await anonymous.post(
        "/api/v1/auth/token", json={"username": "nadie.nunca", "password": PASSWORD}
    )
    assert locked.status_code == unknown.status_code == 401
    assert locked.json() == unknown.json()
    assert "se bloquea" in locked.json()["detail"]
    async with sessions() as session:
        account = (
            await session.execute(select(Account).where(Account.username == "ana.operadora"))
        ).scalar_one()
    assert account.locked_until is not None
    assert account.locked_until > utcnow()
    # Once the lock has run out, one more wrong guess starts the count again: it does not
    # lock the account anew (one guess per period would keep a staff member out for good).
    async with sessions() as session, session.begin():
        await session.execute(
            update(Account).where(Account.username == "ana.operadora")
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )  # fmt: skip
    again = {"username": "ana.operadora", "password": "mala-clave-123", "totp": "000000"}
    assert (await anonymous.post("/api/v1/auth/token", json=again)).status_code == 401
    right = await anonymous.post(
        "/api/v1/auth/token",
        json={"username": "ana.operadora", "password": PASSWORD, "totp": pyotp.TOTP(secret).now()},
    )
    assert right.status_code == 200, right.text


async def test_parallel_guesses_do_not_get_around_the_lockout(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Guesses sent at once wait for one another on the account's row: no more wrong
    passwords are tried than the lockout allows, and a late failure never clears the lock
    (on SQLite, which has no row locks, the count is atomic and the lock still holds)."""
    await _staff(sessions, settings)
    guess = {"username": "ana.operadora", "password": "mala-clave-123", "totp": "000000"}
    answers = await asyncio.gather(
        *(anonymous.post("/api/v1/auth/token", json=guess) for _ in range(12))
    )
    assert {a.status_code for a in answers} == {401}
    async with sessions() as session:
        account = (
            await session.execute(select(Account).where(Account.username == "ana.operadora"))
        ).scalar_one()
    assert account.locked_until is not None
    # Only the guesses tried before the lock was set count (the others are refused untried).
    assert account.failed_attempts >= settings.max_failed_logins
    if settings.database_url.startswith("postgresql"):
        assert account.failed_attempts == settings.max_failed_logins


async def test_staff_must_use_totp_and_strong_passwords(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    base = {"username": "x.y", "display_name": "X", "role": Role.CLINICIAN}
    async with sessions() as session, session.begin():
        with pytest.raises(InvalidInput) as weak:
            await service.create_account(
                session, AccountCreate(**base, password="corta"), _ring(settings)
            )
        assert weak.value.problems[0].field == "password"
        with pytest.raises(InvalidInput) as no_totp:
            await service.create_account(
                session, AccountCreate(**base, password=PASSWORD, totp=False), _ring(settings)
            )
        assert no_totp.value.problems[0].field == "totp"


async def test_security_headers_on_answers(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.get("/api/v1/health/live")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_production_refuses_default_secrets(settings: Settings) -> None:
    from salud.app import create_app

    with pytest.raises(RuntimeError, match="SALUD_TOKEN_SECRET"):
        create_app(settings.model_copy(update={"environment": "production"}))
    import base64
    import os

    strong = base64.b64encode(os.urandom(32)).decode()
    for weak in ("x" * 31, "desarrollo-no-usar-en-produccion-token-secret-0001"):
        production = settings.model_copy(update={
            "environment": "production", "token_secret": SecretStr(weak),
            "kek": SecretStr(strong), "audit_key": SecretStr(strong),
        })  # fmt: skip
        with pytest.raises(RuntimeError, match="SALUD_TOKEN_SECRET") as refused:
            create_app(production)
        assert "SALUD_AUDIT_KEY" not in str(refused.value)
        with pytest.raises(RuntimeError, match="SALUD_AUDIT_KEY"):
            create_app(production.model_copy(update={
                "token_secret": SecretStr(strong), "audit_key": SecretStr(weak)
            }))  # fmt: skip
    create_app(production.model_copy(update={"token_secret": SecretStr(strong)}))


async def test_production_refuses_to_start_with_demo_accounts(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    import base64
    import os

    from salud.access.models import Account
    from salud.app import create_app

    production = settings.model_copy(update={
        "environment": "production",
        "token_secret": SecretStr(base64.b64encode(os.urandom(32)).decode()),
        "kek": SecretStr(base64.b64encode(os.urandom(32)).decode()),
        "audit_key": SecretStr(base64.b64encode(os.urandom(32)).decode()),
    })  # fmt: skip
    await _staff(sessions, settings, "recepcion.demo")
    app = create_app(production)
    with pytest.raises(RuntimeError, match=r"cuentas de demostración.*recepcion\.demo"):
        async with app.router.lifespan_context(app):
            pass
    async with sessions() as session, session.begin():
        await session.execute(delete(Account).where(Account.username == "recepcion.demo"))
    async with app.router.lifespan_context(app):  # without them it starts
        pass


async def test_kek_rotation_rewraps_totp_secrets_without_loss(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    import base64
    import os

    secret = await _staff(sessions, settings)
    new_key = base64.b64encode(os.urandom(32)).decode()
    rotating = Keyring.from_config(
        "2027", new_key, f"{settings.kek_id}:{settings.kek.get_secret_value()}"
    )
    async with sessions() as session, session.begin():
        assert await service.rewrap_secrets(session, rotating) == 1
    only_new = Keyring.from_config("2027", new_key)
    async with sessions() as session:
        account = (await session.execute(select(Account))).scalar_one()
        assert service.totp_secret(account, only_new) == secret
    async with sessions() as session, session.begin():  # a second run has nothing to move
        assert await service.rewrap_secrets(session, rotating) == 0


async def test_sign_in_is_rate_limited_per_address(anonymous: httpx.AsyncClient) -> None:
    codes = []
    for _ in range(25):
        answer = await anonymous.post(
            "/api/v1/auth/token",
            json={"username": "nadie", "password": "lo-que-sea-123", "totp": "000000"},
        )
        codes.append(answer.status_code)
    assert codes[:20] == [401] * 20
    assert set(codes[20:]) == {429}
    assert int(answer.headers["retry-after"]) >= 1  # when to try again (RFC 9110 §10.2.3)


async def test_argon2_runs_off_the_event_loop(
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hash takes about 0.1 s of CPU: on the event loop, every other request of the server
    would wait behind each sign-in (a few guesses a second would stall it)."""
    import threading

    from salud.access import passwords

    threads: list[str] = []
    original = passwords.verify_password

    def spy(stored: str | None, password: str) -> bool:
        threads.append(threading.current_thread().name)
        return original(stored, password)

    monkeypatch.setattr(passwords, "verify_password", spy)
    secret = await _staff(sessions, settings)
    code = pyotp.TOTP(secret).now()
    good = {"username": "ana.operadora", "password": PASSWORD, "totp": code}
    assert (await anonymous.post("/api/v1/auth/token", json=good)).status_code == 200
    unknown = {"username": "nadie", "password": PASSWORD}
    assert (await anonymous.post("/api/v1/auth/token", json=unknown)).status_code == 401
    assert len(threads) == 2
    assert all(t.startswith("argon2") for t in threads), threads


def test_cookies_are_secure_in_production_whatever_the_scheme(settings: Settings) -> None:
    """Behind a proxy that ends TLS a request may arrive as http: production cookies are
    Secure anyway (a session cookie sent in clear is a session stolen)."""
    production = settings.model_copy(update={"environment": "production"})
    assert production.secure_cookies("http")
    assert settings.secure_cookies("https")
    assert not settings.secure_cookies("http")  # development over plain http still works


async def test_a_flood_of_sign_ins_is_told_to_retry_not_queued(
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond MAX_PENDING hashes at once (guesses from many addresses), a sign-in is a 503
    with Retry-After: nothing verified, nothing counted against the account."""
    from salud.access import passwords

    await _staff(sessions, settings)
    monkeypatch.setattr(passwords, "MAX_PENDING", 0)
    body = {"username": "ana.operadora", "password": "mala-clave-123", "totp": "000000"}
    busy = await anonymous.post("/api/v1/auth/token", json=body)
    assert busy.status_code == 503, busy.text
    assert busy.headers["retry-after"] == "5"
    client = await anonymous.post(
        "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=("x", "y")
    )
    assert (client.status_code, client.json()["error"]) == (503, "temporarily_unavailable")
    async with sessions() as session:
        account = (
            await session.execute(select(Account).where(Account.username == "ana.operadora"))
        ).scalar_one()
    assert account.failed_attempts == 0
