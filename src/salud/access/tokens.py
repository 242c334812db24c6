"""Bearer tokens for the API: short-lived JWTs (RFC 7519), HMAC-SHA256 signed.

Verified in process (about 40 µs) so that no request pays a database round trip to know who
is asking. They live `token_ttl_seconds` (15 minutes by default). A token signed out, or any
token of an account or client disabled, is refused as soon as this process has read the
revocations (`access/revocation.py`: at once in the process that signed out, within
`revocation_refresh_seconds` in the others)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
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
    """A verified token: who, until when, its id, the session it belongs to (the session id
    and sign-in time carry over when a page session is renewed), and whether it is a page
    session's (signed in on the pages: the only kind renewed)."""

    expires: float
    principal: Principal
    jti: str
    sid: str
    signed_in_at: float  # to the millisecond: a revocation in the same second is told apart
    page: bool


@dataclass(frozen=True, slots=True)
class Revoked:
    """What a read of the database found revoked: sessions signed out (id -> when their last
    token expires; only those new since the last read), per subject the instant up to which
    its tokens are void (disabled, a new second factor), and the subjects disabled."""

    sessions: Mapping[str, float] = field(default_factory=dict)
    subjects: Mapping[str, float] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()


class TokenService:
    def __init__(self, secret: str, ttl_seconds: int, cache_size: int = 10_000) -> None:
        self._key = OctKey.import_key(secret.encode())
        self.ttl_seconds = ttl_seconds
        # A token verified once is the same token on its next request: remember it until it
        # expires (the signature check is 40 µs; a look-up is <1 µs).
        self._cache: dict[str, Seen] = {}
        self._cache_size = cache_size
        # Sessions signed out (here or read from the database; kept until their last token
        # expires), subjects' cutoffs and the disabled subjects, as last read.
        self._sessions: dict[str, float] = {}
        self._subjects: Mapping[str, float] = {}
        self._disabled: frozenset[str] = frozenset()
        self.revocations_read: datetime | None = None  # when the last read began

    def issue(
        self,
        principal: Principal,
        *,
        session: tuple[str, float] | None = None,
        page: bool = False,
        not_after: float | None = None,
    ) -> str:
        """A token for the principal. `session` (id, sign-in time) when it renews a page
        session (a new sign-in starts a new one); `page` for a sign-in on the pages (their
        sessions are renewed while used); it expires in `ttl_seconds`, or at `not_after` if
        sooner (a session's last renewal ends at its limit)."""
        instant = utcnow().timestamp()
        now = int(instant)
        sid, signed_in_at = session or (secrets.token_urlsafe(12), round(instant, 3))
        expires = now + self.ttl_seconds
        if not_after is not None:
            expires = min(expires, int(not_after))
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": principal.subject,
            "usr": principal.username,
            "role": principal.role.value,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(12),
            "sid": sid,
            "auth_time": signed_in_at,
        }
        if page:
            claims["page"] = True
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
        if self._void(hit):
            raise Unauthorized("la sesión se cerró o la cuenta fue desactivada: inicie sesión")
        return hit

    def _void(self, hit: Seen) -> bool:
        subject = hit.principal.subject
        if hit.sid in self._sessions or subject in self._disabled:
            return True
        cutoff = self._subjects.get(subject)
        return cutoff is not None and hit.signed_in_at <= cutoff

    def principal(self, token: str) -> Principal:
        return self.seen(token).principal

    def renewed(self, token: str, max_session_seconds: int) -> str | None:
        """A fresh token for a page session in its last third of life, or None: not due, not
        valid, not a page session's (an API or machine client's token is never renewed), or
        the session is at its limit, `max_session_seconds` after its sign-in (it ends)."""
        try:
            hit = self.seen(token)
        except Unauthorized:
            return None
        now = time.time()
        if not hit.page or hit.principal.role is Role.CLIENT or not hit.sid:
            return None
        if hit.expires - now > self.ttl_seconds / 3:
            return None
        limit = hit.signed_in_at + max_session_seconds
        if limit <= hit.expires:  # this token already reaches the limit
            return None
        return self.issue(hit.principal, session=(hit.sid, hit.signed_in_at), page=True,
                          not_after=limit)  # fmt: skip

    def identify(self, token: str) -> Seen:
        """A valid token's claims (what a sign-out records), revoked or not."""
        return self._verify(token)

    def revoke_here(self, sid: str, until: float) -> None:
        """Refuse this session's tokens in this process at once (the database tells the
        others)."""
        self._sessions[sid] = until

    def apply_revocations(self, revoked: Revoked) -> None:
        """A read of the database: new sessions signed out are added (none is forgotten
        before its last token expires), the subjects' cutoffs and the disabled replaced."""
        now = time.time()
        self._sessions.update(revoked.sessions)
        self._sessions = {sid: until for sid, until in self._sessions.items() if until > now}
        self._subjects, self._disabled = revoked.subjects, revoked.disabled

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
            iat = float(claims.get("iat", 0))
            return Seen(float(claims["exp"]), principal, str(claims.get("jti", "")),
                        str(claims.get("sid", "")), float(claims.get("auth_time", iat)),
                        claims.get("page") is True)  # fmt: skip
        except (JoseError, KeyError, ValueError, TypeError):
            raise Unauthorized("el token no es válido o ya expiró") from None
