"""CSRF protection for the pages (OWASP double-submit cookie, signed).

The session cookie is SameSite=Strict already; on top of that every state-changing request
from a page must carry the CSRF token, as a form field or an X-CSRF-Token header, equal to
the one in the `salud_csrf` cookie and signed with the server's secret (so a subdomain that
can plant cookies still cannot forge a pair)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "salud_csrf"
HEADER = "x-csrf-token"
FIELD = "csrf"


def new_token(secret: bytes) -> str:
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_mac(secret, nonce)}"


def _mac(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()[:32]


def valid(secret: bytes, cookie: str | None, sent: str | None) -> bool:
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        return False
    nonce, _, mac = cookie.partition(".")
    return bool(nonce) and hmac.compare_digest(mac, _mac(secret, nonce))
