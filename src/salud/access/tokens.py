"""Bearer tokens for the API: short-lived JWTs (RFC 7519), HMAC-SHA256 signed.

Verified in process (about 40 µs) so that no request pays a database round trip to know who
is asking. They live `token_ttl_seconds` (15 minutes by default). A token signed out, or any
token of an account or client disabled, is refused as soon as this process has read the
revocations (`access/revocation.py`: at once in the process that signed out, within
`revocation_refresh_seconds` in the others)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.errors import Unauthorized
from salud.kit.clock import utcnow

ISSUER = "salud-universal"
_CLAIMS = jwt.JWTClaimsRegistry(
    iss={"essential": True, "value": ISSUER}, exp={"essential": True}, sub={"essential": True}
)


# The web pages' session: the same bearer token, in an httponly cookie.
SESSION_COOKIE = "salud_session"


@dataclass(frozen=True, slots=True)
class Seen:
    """A verified token: who, until when, its id, and the web session it belongs to (the
    session id and sign-in time carry over when a page session is renewed)."""

    expires: float
    principal: Principal
    jti: str
    sid: str
    signed_in_at: int


class TokenService:
    def __init__(self, secret: str, ttl_seconds: int, cache_size: int = 10_000) -> None:
        self._key = OctKey.import_key(secret.encode())
        self.ttl_seconds = ttl_seconds
        # A token verified once is the same token on its next request: remember it until it
        # expires (the signature check is 40 µs; a look-up is <1 µs).
        self._cache: dict[str, Seen] = {}
        self._cache_size = cache_size
        # Revocations, as last read from the database (and this process's own sign-outs).
        self._revoked: frozenset[str] = frozenset()  # token ids (jti)
        self._disabled: frozenset[str] = frozenset()  # subjects: account:{id}, client:{id}

    def issue(self, principal: Principal, *, session: tuple[str, int] | None = None) -> str:
        """A token for the principal; `session` (id, sign-in time) when it renews a page
        session (a new sign-in starts a new one)."""
        now = int(utcnow().timestamp())
        sid, signed_in_at = session or (secrets.token_urlsafe(12), now)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": principal.subject,
            "usr": principal.username,
            "role": principal.role.value,
            "iat": now,
            "exp": now + self.ttl_seconds,
            "jti": secrets.token_urlsafe(12),
            "sid": sid,
            "auth_time": signed_in_at,
        }
        for name, value in (
            ("inst", principal.institution_code),
            ("clues", principal.clues),
            ("curp", principal.curp),
            ("mod", principal.module_code),
        ):
            if value is not None:
                claims[name] = value
        if principal.scopes:
            claims["scope"] = " ".join(sorted(principal.scopes))
        return jwt.encode({"alg": "HS256"}, claims, self._key)

    def seen(self, token: str) -> Seen:
        """The verified token (refused when expired, signed out or its subject disabled)."""
        hit = self._cache.get(token)
        if hit is not None and time.time() >= hit.expires:
            del self._cache[token]
            hit = None
        if hit is None:
            hit = self._verify(token)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # bounded memory; the cache refills at the next requests
            self._cache[token] = hit
        if hit.jti in self._revoked or hit.principal.subject in self._disabled:
            raise Unauthorized("la sesión se cerró o la cuenta fue desactivada: inicie sesión")
        return hit

    def principal(self, token: str) -> Principal:
        return self.seen(token).principal

    def renewed(self, token: str, max_session_seconds: int) -> str | None:
        """A fresh token for a page session in its last third of life, or None (not due,
        not valid, or the session has lasted `max_session_seconds` since its sign-in: then
        it ends and the person signs in again)."""
        try:
            hit = self.seen(token)
        except Unauthorized:
            return None
        now = time.time()
        if hit.expires - now > self.ttl_seconds / 3:
            return None
        if now - hit.signed_in_at >= max_session_seconds or not hit.sid:
            return None
        return self.issue(hit.principal, session=(hit.sid, hit.signed_in_at))

    def identify(self, token: str) -> tuple[str, str, float]:
        """(token id, subject, expiry) of a valid token: what a sign-out records."""
        hit = self._verify(token)
        return hit.jti, hit.principal.subject, hit.expires

    def revoke_here(self, jti: str) -> None:
        """Refuse this token in this process at once (the database tells the others)."""
        self._revoked = self._revoked | {jti}

    def apply_revocations(self, revoked: frozenset[str], disabled: frozenset[str]) -> None:
        """The revocations read from the database (they replace what was known)."""
        self._revoked, self._disabled = revoked, disabled

    def _verify(self, token: str) -> Seen:
        try:
            decoded = jwt.decode(token, self._key, algorithms=["HS256"])
            _CLAIMS.validate(decoded.claims)
            claims = decoded.claims
            principal = Principal(
                subject=str(claims["sub"]),
                username=str(claims["usr"]),
                role=Role(claims["role"]),
                institution_code=claims.get("inst"),
                clues=claims.get("clues"),
                curp=claims.get("curp"),
                module_code=claims.get("mod"),
                scopes=frozenset(str(claims.get("scope", "")).split()),
            )
            iat = int(claims.get("iat", 0))
            return Seen(float(claims["exp"]), principal, str(claims.get("jti", "")),
                        str(claims.get("sid", "")), int(claims.get("auth_time", iat)))  # fmt: skip
        except (JoseError, KeyError, ValueError, TypeError):
            raise Unauthorized("el token no es válido o ya expiró") from None
