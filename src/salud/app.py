"""create_app(): the ASGI application. The lifespan owns the engine and the sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from salud import __version__
from salud.api import facilities, health, persons, problems
from salud.config import Settings, get_settings
from salud.kit.logging import configure_logging
from salud.storage.engine import create_engine, session_factory
from salud.storage.fastread import FastReader

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        # Reads need no transaction: autocommit saves the BEGIN and ROLLBACK round trips.
        app.state.read_sessions = session_factory(
            engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        app.state.reader = FastReader(engine)
        await app.state.reader.start()
        try:
            yield
        finally:
            await app.state.reader.close()
            await engine.dispose()

    app = FastAPI(
        title="Salud Universal",
        version=__version__,
        summary="Padrón de personas, catálogo CLUES, credencial y expediente",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    problems.install(app)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(persons.router, prefix=API_PREFIX)
    app.include_router(facilities.router, prefix=API_PREFIX)
    app.router.routes[0:0] = persons.fast_routes(API_PREFIX)
    return app
