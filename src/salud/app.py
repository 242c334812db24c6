"""create_app(): the ASGI application. The lifespan owns the engine and the sessions."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError, ProgrammingError

from salud import __version__
from salud.access import repository as accounts
from salud.access import revocation
from salud.access.audit import AuditLog
from salud.access.oidc import OidcClient, OidcConfig
from salud.access.tokens import TokenService
from salud.api import (
    audit,
    auth,
    care,
    credentials,
    data_requests,
    enrollment,
    facilities,
    fhir,
    health,
    input_guard,
    oauth,
    oidc,
    persons,
    problems,
    progress,
    security_headers,
)
from salud.api.deps import known_query
from salud.config import Settings, get_settings
from salud.credentials.service import CredentialConfig
from salud.credentials.signing import Signer
from salud.enrollment import progress as drive_progress
from salud.enrollment.biometrics import NoMatcher
from salud.facilities.nearest import IndexCache
from salud.kit.logging import configure_logging
from salud.kit.ratelimit import WindowLimiter
from salud.kit.sealing import Keyring
from salud.storage.engine import create_engine, session_factory
from salud.storage.fastread import FastReader
from salud.web import batches as batch_pages
from salud.web import citizen as citizen_pages
from salud.web import desk as desk_pages
from salud.web import pages
from salud.web import privacy as privacy_pages
from salud.web import progress as progress_page
from salud.web.session import SessionRenewal

API_PREFIX = "/api/v1"
_CHECKED = [Depends(known_query)]


def _oidc_config(settings: Settings) -> OidcConfig:
    issuer, client_id = settings.oidc_issuer, settings.oidc_client_id
    secret, redirect = settings.oidc_client_secret, settings.oidc_redirect_uri
    if not (issuer and client_id and secret and redirect):
        raise RuntimeError(
            "OpenID Connect: defina juntos SALUD_OIDC_ISSUER, SALUD_OIDC_CLIENT_ID, "
            "SALUD_OIDC_CLIENT_SECRET y SALUD_OIDC_REDIRECT_URI"
        )
    return OidcConfig(
        issuer=issuer,
        client_id=client_id,
        client_secret=secret.get_secret_value(),
        redirect_uri=redirect,
        curp_claim=settings.oidc_curp_claim,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)

    if settings.environment == "production" and settings.insecure_defaults():
        raise RuntimeError(
            "producción no arranca con secretos de desarrollo: defina "
            + ", ".join(settings.insecure_defaults())
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        # Reads need no transaction: autocommit saves the BEGIN and ROLLBACK round trips.
        app.state.read_sessions = session_factory(
            engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        if settings.environment == "production":
            async with app.state.sessions() as session:
                demo = await accounts.demo_usernames(session)
            if demo:
                await engine.dispose()
                raise RuntimeError(
                    "producción no arranca con cuentas de demostración: elimínelas ("
                    + ", ".join(demo[:10])
                    + (", …" if len(demo) > 10 else "")
                    + ")"
                )
        app.state.reader = FastReader(engine)
        await app.state.reader.start()
        app.state.audit = AuditLog(
            app.state.sessions,
            settings.audit_key.get_secret_value().encode(),
            max_delay=settings.audit_group_commit_ms / 1000,
        )
        await app.state.audit.start()
        app.state.signer = Signer(app.state.sessions, app.state.keyring)
        http = httpx.AsyncClient(follow_redirects=False)
        if settings.oidc_issuer:
            app.state.oidc = OidcClient(_oidc_config(settings), app.state.keyring, http)
        # Everything loaded so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise stall requests now and then (measured:
        # p99 77 ms -> 10 ms, bench/RESULTS.md). Not in tests, which build many apps.
        if settings.environment != "test":
            gc.collect()
            gc.freeze()
        refresher = None
        if settings.progress_snapshots:  # the dashboard's figures, in the background
            every = timedelta(seconds=settings.progress_refresh_seconds)
            refresher = asyncio.get_running_loop().create_task(
                drive_progress.refresher(app.state.sessions, every), name="progress-refresher"
            )
        revocations = None
        try:
            # Sessions signed out and accounts or clients disabled: read now, then every few
            # seconds (a server must not start unable to refuse them).
            try:
                await revocation.refresh(app.state.sessions, app.state.tokens)
            except (OperationalError, ProgrammingError) as exc:
                raise RuntimeError(
                    "no se pudieron leer las revocaciones de sesión: ¿falta `salud db upgrade`?"
                ) from exc
            revocations = asyncio.get_running_loop().create_task(
                revocation.keep_fresh(
                    app.state.sessions, app.state.tokens, settings.revocation_refresh_seconds
                ),
                name="revocations",
            )
            yield
        finally:
            for task in (refresher, revocations):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await http.aclose()
            await app.state.audit.close()
            await app.state.reader.close()
            await engine.dispose()

    app = FastAPI(
        title="Salud Universal",
        version=__version__,
        summary="Padrón de personas, catálogo CLUES, credencial y expediente",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=security_headers.DOCS_PATH,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keyring = Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )
    app.state.tokens = TokenService(
        settings.token_secret.get_secret_value(), settings.token_ttl_seconds
    )
    # Failed sign-ins per client address (staff and machine clients apart).
    app.state.sign_in_limiter = WindowLimiter(limit=20, window_seconds=60)
    app.state.client_limiter = WindowLimiter(limit=20, window_seconds=60)
    app.state.facilities_index = IndexCache()
    app.state.public_validation_limiter = WindowLimiter(limit=60, window_seconds=60)
    # The second QR's page: codes that name no card, per address (web/pages.py).
    app.state.link_limiter = WindowLimiter(limit=30, window_seconds=60)
    app.state.booking_limiter = WindowLimiter(
        limit=settings.public_booking_per_minute, window_seconds=60
    )
    app.state.biometric_matcher = NoMatcher()
    app.state.credential_config = CredentialConfig(
        issuer=settings.credential_issuer,
        public_base_url=settings.public_base_url,
        validity_years=settings.credential_validity_years,
        statement_hours=settings.digital_statement_hours,
        qr_face=settings.credential_qr_face,
    )
    problems.install(app)
    app.add_exception_handler(pages.SessionEnded, pages.session_ended)
    # Page sessions renewed while in use (web/session.py).
    app.add_middleware(
        SessionRenewal, tokens=app.state.tokens, settings=settings
    )  # fmt: skip
    input_guard.install(app)  # inside the security headers: its answers carry them too
    security_headers.install(app)
    # The REST API refuses unknown query parameters by name (not the OAuth2/OIDC endpoints:
    # identity providers add parameters of their own to a callback).
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(auth.router, prefix=API_PREFIX)
    app.include_router(oauth.router, prefix=API_PREFIX)
    app.include_router(oidc.router, prefix=API_PREFIX)
    app.include_router(audit.router, prefix=API_PREFIX, dependencies=_CHECKED)
    app.include_router(care.router, prefix=API_PREFIX, dependencies=_CHECKED)
    app.include_router(data_requests.router, prefix=API_PREFIX, dependencies=_CHECKED)
    app.include_router(persons.router, prefix=API_PREFIX, dependencies=_CHECKED)
    app.include_router(facilities.router, prefix=API_PREFIX, dependencies=_CHECKED)
    app.include_router(credentials.router, prefix=API_PREFIX, dependencies=_CHECKED)
    app.include_router(enrollment.router, prefix=API_PREFIX, dependencies=_CHECKED)
    app.include_router(progress.router, prefix=API_PREFIX, dependencies=_CHECKED)
    app.include_router(credentials.wellknown)
    fhir.install(app)
    app.include_router(citizen_pages.router)
    app.include_router(privacy_pages.router)
    app.include_router(desk_pages.router)
    app.include_router(batch_pages.router)
    app.include_router(pages.router)
    app.include_router(progress_page.router)
    app.mount("/static", StaticFiles(directory=pages.HERE / "static"), name="static")
    app.router.routes[0:0] = [
        *persons.fast_routes(API_PREFIX),
        *credentials.fast_routes(API_PREFIX),
        *fhir.fast_routes(),
    ]
    return app
