"""Machine clients: registration and the client-credentials grant (RFC 6749 §4.4)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.models import ApiClient
from salud.access.passwords import hash_password, verify_password_off_loop
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.scopes import check_scope
from salud.errors import InvalidInput
from salud.kit.clock import utcnow

_NAME_MAX = 200  # api_clients.name


class OAuthError(Exception):
    """An error answered in RFC 6749 §5.2 form (`error`, `error_description`)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str  # shown once; only its Argon2 hash is stored
    scopes: frozenset[str]


async def register(
    session: AsyncSession,
    name: str,
    scopes: list[str],
    institution_code: int | None = None,
    clues: str | None = None,
) -> NewClient:
    name = name.strip()
    if not name:
        raise InvalidInput.on("name", "indique el nombre del sistema")
    if len(name) > _NAME_MAX:
        raise InvalidInput.on("name", f"a lo más {_NAME_MAX} caracteres")
    if not scopes:
        raise InvalidInput.on("scopes", "indique al menos un scope")
    for scope in scopes:
        reason = check_scope(scope)
        if reason:
            raise InvalidInput.on("scopes", reason)
    client_id = f"cli_{secrets.token_hex(12)}"
    secret = secrets.token_urlsafe(32)
    session.add(
        ApiClient(
            client_id=client_id,
            name=name,
            institution_code=institution_code,
            clues=clues,
            secret_hash=hash_password(secret),
            scopes=" ".join(sorted(set(scopes))),
            active=True,
            created_at=utcnow(),
        )
    )
    await session.flush()
    return NewClient(client_id, secret, frozenset(scopes))


async def authenticate(
    session: AsyncSession, client_id: str, secret: str, requested: str | None
) -> Principal:
    found = await session.execute(select(ApiClient).where(ApiClient.client_id == client_id))
    client = found.scalar_one_or_none()
    # verify_password runs against a dummy hash for unknown clients: same time either way.
    valid = await verify_password_off_loop(client.secret_hash if client else None, secret)
    if client is None or not valid or not client.active:
        raise OAuthError("invalid_client", "cliente o secreto incorrectos", 401)
    granted = frozenset(client.scopes.split())
    wanted = frozenset(requested.split()) if requested else granted
    beyond = wanted - granted
    if beyond:
        raise OAuthError(
            "invalid_scope", f"scopes no concedidos a este cliente: {' '.join(sorted(beyond))}"
        )
    return Principal(
        subject=f"client:{client.client_id}",
        username=client.client_id,
        role=Role.CLIENT,
        institution_code=client.institution_code,
        clues=client.clues,
        scopes=wanted,
    )
