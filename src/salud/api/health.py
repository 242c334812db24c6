"""Liveness and readiness, plus the hello-world endpoint benchmarks compare against."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from salud.api.deps import ReadSession

router = APIRouter(tags=["salud"])


@router.get("/health/live", summary="El proceso responde", openapi_extra={"x-permission": "public"})
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="La base de datos responde",
    openapi_extra={"x-permission": "public"},
)
async def ready(session: ReadSession) -> dict[str, str]:
    await session.execute(text("SELECT 1"))
    return {"status": "ok"}
