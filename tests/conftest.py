"""Test harness. The database comes from SALUD_TEST_DB: `sqlite` (default, a file per run)
or `postgresql` (a fresh database per run on 127.0.0.1:5432, dropped at the end).
The schema is always built by running the Alembic migrations, never by create_all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.app import create_app
from salud.config import Settings, get_settings
from salud.credentials import signing
from salud.kit.sealing import Keyring
from salud.schema import metadata
from salud.storage import migrate
from salud.storage.engine import create_engine, session_factory

PG_ADMIN = os.environ.get("SALUD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def backend() -> str:
    value = os.environ.get("SALUD_TEST_DB", "sqlite")
    if value not in {"sqlite", "postgresql"}:
        raise pytest.UsageError(f"SALUD_TEST_DB must be sqlite or postgresql, not {value!r}")
    return value


def pytest_report_header() -> str:
    return f"salud database backend: {backend()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgresql` exercise what only a server has, and tests marked `sqlite`
    what only SQLite allows; each runs in its own pass of `make test` and is deselected, not
    skipped, in the other."""
    other = "sqlite" if backend() == "postgresql" else "postgresql"
    keep = [i for i in items if i.get_closest_marker(other) is None]
    dropped = [i for i in items if i.get_closest_marker(other) is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared catalogs are missing: expected {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend() == "sqlite":
        path = tmp_path_factory.mktemp("db") / "salud-test.db"
        url = f"sqlite+aiosqlite:///{path}"
        migrate.upgrade(url)
        yield url
        return
    import psycopg

    name = f"salud_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is unreachable at {PG_ADMIN}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(database_url: str, shared_data: Path) -> Settings:
    # The dashboard counts on every request here (its snapshots: tests/enrollment/test_progress.py).
    return Settings(
        environment="test", database_url=database_url, shared_data_dir=shared_data,
        progress_refresh_seconds=0,
    )  # fmt: skip


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory; every table is emptied after the test, so tests leave nothing."""
    yield session_factory(engine)
    async with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(delete(table))


TokenFor = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def token_for(settings: Settings) -> TokenFor:
    """Authorization headers for a caller of the given role (a signed token, as sign-in
    would issue; the principal is in the token, so no account row is needed)."""
    tokens = TokenService(settings.token_secret.get_secret_value(), settings.token_ttl_seconds)

    def make(
        role: Role,
        *,
        curp: str | None = None,
        username: str | None = None,
        institution: int = 2,
        clues: str | None = None,
        module: str | None = None,
        scopes: str = "",
    ) -> dict[str, str]:
        principal = Principal(
            subject=f"account:{role.value}",
            username=username or f"{role.value}.prueba",
            role=role,
            curp=curp,
            institution_code=institution,
            clues=clues,
            module_code=module,
            scopes=frozenset(scopes.split()),
        )
        return {"Authorization": f"Bearer {tokens.issue(principal)}"}

    return make


@pytest.fixture
async def anonymous(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app with no credentials."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


@pytest.fixture
async def client(anonymous: httpx.AsyncClient, token_for: TokenFor) -> httpx.AsyncClient:
    """A client signed in as a registration supervisor (reads and writes the registry)."""
    anonymous.headers.update(token_for(Role.SUPERVISOR))
    return anonymous


def keyring_of(settings: Settings) -> Keyring:
    return Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )


@pytest.fixture
async def signing_key(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> str:
    """A signing key in service, as `salud credentials rotate-key` leaves it."""
    async with sessions() as session, session.begin():
        return await signing.rotate(session, keyring_of(settings), "prueba")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, on the test database."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "SALUD_DATABASE_URL": settings.database_url,
        "SALUD_ENVIRONMENT": "test",
        "SALUD_SHARED_DATA_DIR": str(settings.shared_data_dir),
        "SALUD_PUBLIC_BASE_URL": base,
        "SALUD_LOG_LEVEL": "WARNING",
        "SALUD_PROGRESS_REFRESH_SECONDS": str(settings.progress_refresh_seconds),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "salud.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/api/v1/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def cli_env(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    """A CLI runner whose `salud` commands use the test database (tables emptied after)."""
    monkeypatch.setenv("SALUD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SALUD_SHARED_DATA_DIR", str(settings.shared_data_dir))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()
