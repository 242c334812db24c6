"""Page sessions that last while they are used: a session cookie in the last third of its
life is replaced, on any page request, by a fresh token of the same session (same id, so the
page's CSRF tokens stay good, and same sign-in time). An operator enrolling people all day
is not sent to sign in every 15 minutes; a session left idle for 15 minutes still ends, and
any session ends `SALUD_SESSION_MAX_HOURS` after its sign-in (a working day)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salud.access.tokens import SESSION_COOKIE, TokenService
from salud.config import Settings

# Paths that are not pages: the API and FHIR use bearer tokens, not the session cookie.
_NOT_PAGES = ("/api/", "/fhir", "/.well-known/")


class SessionRenewal:
    def __init__(self, app: ASGIApp, tokens: TokenService, settings: Settings) -> None:
        self.app = app
        self.tokens = tokens
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(_NOT_PAGES):
            await self.app(scope, receive, send)
            return
        fresh = self._renewal(scope)
        if fresh is None:
            await self.app(scope, receive, send)
            return

        async def send_renewed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A response that ends or replaces the session (sign-out, sign-in) wins.
                if not any(SESSION_COOKIE + "=" in v for v in headers.getlist("set-cookie")):
                    headers.append("set-cookie", self._cookie(fresh, scope))
            await send(message)

        await self.app(scope, receive, send_renewed)

    def _renewal(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"cookie":  # parsed as Starlette parses it for the pages
                token = cookie_parser(value.decode("latin-1")).get(SESSION_COOKIE)
                if token:
                    return self.tokens.renewed(token, self.settings.session_max_seconds)
        return None

    def _cookie(self, token: str, scope: Scope) -> str:
        secure = self.settings.secure_cookies(str(scope.get("scheme", "http")))
        return (
            f"{SESSION_COOKIE}={token}; Max-Age={self.tokens.ttl_seconds}; Path=/; HttpOnly; "
            f"SameSite=Strict{'; Secure' if secure else ''}"
        )
