"""Security headers on every answer (OWASP secure headers): no sniffing, no framing, no
referrer leaks, HSTS, and no caching of personal data by browsers or proxies."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATH = "/api/v1/docs"  # the interactive API documentation (app.py), the relaxed CSP's page

_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    ),
]
# The interactive API docs load their script and styles from a CDN; they get a looser policy.
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    b"https://fastapi.tiangolo.com; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"] == DOCS_PATH  # that page only, not any path ending in /docs

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name for name, _ in headers}
                for name, value in _HEADERS:
                    if name not in present:
                        if docs and name == b"content-security-policy":
                            value = _DOCS_CSP
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, add_headers)


def install(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)
