"""CSRF protection for the pages (OWASP double-submit cookie, signed).

The session cookie is SameSite=Strict already; on top of that every state-changing request
from a page must carry the CSRF token, as a form field or an X-CSRF-Token header, equal to
the one in the `salud_csrf` cookie and signed with the server's secret over a binding to the
session it was given in (a digest of the session's id; empty before sign-in). So a token
is good for one session only: one taken anonymously, or from another session, and planted
by a subdomain that can set cookies, is refused; signing in or out needs a fresh one, which
the next page gives."""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "salud_csrf"
HEADER = "x-csrf-token"
FIELD = "csrf"


def binding(session: str | None) -> str:
    """What ties a token to a session: a digest of the session's id (kept when the session
    is renewed), or of the cookie itself when it holds no valid session ("" without one)."""
    if not session:
        return ""
    return hashlib.sha256(session.encode()).hexdigest()[:32]


def new_token(secret: bytes, bound_to: str) -> str:
    # The first letter says whether it was given within a session: a form posted after its
    # session ended is then sent to sign in again, not refused as a forgery (a forged letter
    # gains nothing: the token is still refused).
    nonce = ("s" if bound_to else "a") + secrets.token_urlsafe(18)
    return f"{nonce}.{_mac(secret, nonce, bound_to)}"


def given_in_a_session(cookie: str | None) -> bool:
    return cookie is not None and cookie.startswith("s")


def _mac(secret: bytes, nonce: str, bound_to: str) -> str:
    message = b"csrf:" + nonce.encode() + b":" + bound_to.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def valid(secret: bytes, cookie: str | None, sent: str | None, bound_to: str) -> bool:
    if not cookie or not sent or not (cookie.isascii() and sent.isascii()):
        return False  # a token is ASCII (compare_digest refuses other text with a TypeError)
    if not hmac.compare_digest(cookie, sent):
        return False
    nonce, _, mac = cookie.partition(".")
    return bool(nonce) and hmac.compare_digest(mac, _mac(secret, nonce, bound_to))
