"""Citizen sign-in with OpenID Connect (Core 1.0): authorization code flow with PKCE
(RFC 7636, S256), state and nonce, ID token verified against the provider's published keys.

The provider (in production the government's identity service) asserts who the person is;
the CURP comes from a configurable claim. The browser round trip keeps state, nonce and the
PKCE verifier in a sealed, short-lived cookie, so the service keeps no session table."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.errors import DomainError, InvalidInput, Unauthorized
from salud.kit.sealing import Keyring, SealError, open_sealed, seal

FLOW_SECONDS = 600
_AAD = b"salud:oidc:flow"
_CURP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class OidcUnavailable(DomainError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, [], 503, "Inicio de sesión no disponible", "oidc-unavailable")


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    curp_claim: str = "curp"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _json_object(answer: httpx.Response, what: str) -> dict[str, Any]:
    """The provider's JSON object, or OidcUnavailable: a provider that answers something
    else is failing, which is not the person's fault (a 503, not a 500)."""
    try:
        found = answer.json()
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise OidcUnavailable(f"el proveedor de identidad no entregó JSON válido en {what}")
    return found


class OidcClient:
    def __init__(self, config: OidcConfig, ring: Keyring, http: httpx.AsyncClient) -> None:
        self.config = config
        self._ring = ring
        self._http = http
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    async def _discover(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                answer = await self._http.get(url, timeout=10)
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                raise OidcUnavailable(f"el proveedor de identidad no responde: {exc}") from None
            metadata = _json_object(answer, "su configuración")
            if metadata.get("issuer") != self.config.issuer:
                raise OidcUnavailable("el proveedor anuncia otro emisor (issuer)")
            self._metadata = metadata
        return self._metadata

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            metadata = await self._discover()
            try:
                answer = await self._http.get(str(metadata.get("jwks_uri")), timeout=10)
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                raise OidcUnavailable(f"el proveedor de identidad no responde: {exc}") from None
            try:
                found = _json_object(answer, "sus llaves")
                keys = KeySet.import_key_set(found)  # type: ignore[arg-type]
            except (ValueError, TypeError, KeyError, JoseError) as exc:
                # None at all (joserfc's MissingKeyError) or unreadable: nothing could verify
                # a token, so the provider is failing, not the person.
                raise OidcUnavailable(f"las llaves del proveedor no se leen: {exc}") from None
            self._keys = keys
        return self._keys

    async def start(self) -> tuple[str, str]:
        """The provider URL to send the browser to, and the sealed flow cookie."""
        metadata = await self._discover()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": self.config.redirect_uri,
                "scope": "openid",
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        flow = {"s": state, "n": nonce, "v": verifier, "e": int(time.time()) + FLOW_SECONDS}
        cookie = _b64(seal(orjson.dumps(flow), self._ring, _AAD))
        return f"{metadata['authorization_endpoint']}?{query}", cookie

    def _flow(self, cookie: str | None) -> dict[str, Any]:
        if not cookie:
            raise Unauthorized("no hay un inicio de sesión en curso (falta la cookie del flujo)")
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            flow: dict[str, Any] = orjson.loads(open_sealed(raw, self._ring, _AAD))
        except (ValueError, SealError):
            raise Unauthorized("la cookie del flujo de inicio de sesión no es válida") from None
        if flow["e"] < time.time():
            raise Unauthorized("el inicio de sesión tardó demasiado; vuelva a empezar")
        return flow

    async def finish(self, code: str, state: str, cookie: str | None) -> Principal:
        """Exchange the code (with the PKCE verifier) and verify the ID token."""
        flow = self._flow(cookie)
        if not state.isascii() or not secrets.compare_digest(state, flow["s"]):
            raise Unauthorized("el parámetro state no corresponde a este inicio de sesión")
        metadata = await self._discover()
        try:
            answer = await self._http.post(
                metadata["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.config.redirect_uri,
                    "code_verifier": flow["v"],
                },
                auth=(self.config.client_id, self.config.client_secret),
                timeout=10,
            )
        except httpx.HTTPError as exc:
            raise OidcUnavailable(f"el proveedor de identidad no responde: {exc}") from None
        if answer.status_code != 200:
            raise Unauthorized(f"el proveedor rechazó el código: {answer.text[:200]}")
        id_token = _json_object(answer, "la respuesta de su token").get("id_token")
        if not id_token:
            raise Unauthorized("el proveedor no entregó un id_token")
        claims = await self._verify(id_token, flow["n"])
        curp = claims.get(self.config.curp_claim)
        if not isinstance(curp, str) or len(curp) != 18 or not set(curp) <= _CURP:
            raise InvalidInput.on(self.config.curp_claim, "el proveedor no entregó una CURP válida")
        # The username is what the audit log records as "who": the whole CURP, so that an
        # entry names this one person (a parent opening a child's card, say), not everyone
        # whose CURP starts with the same four letters. Logs mask it (kit/logging.py).
        return Principal(
            subject=f"oidc:{claims['sub']}", username=f"ciudadano:{curp}", role=Role.CITIZEN,
            curp=curp,
        )  # fmt: skip

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
            sub={"essential": True},
        )
        for refresh in (False, True):  # a new key at the provider: fetch the set once more
            try:
                token = jwt.decode(
                    id_token, await self._key_set(refresh), algorithms=["RS256", "ES256", "EdDSA"]
                )
                registry.validate(token.claims)
                return dict(token.claims)
            except (JoseError, ValueError) as exc:
                if refresh:
                    raise Unauthorized(f"id_token inválido: {exc}") from None
        raise Unauthorized("id_token inválido")  # pragma: no cover
