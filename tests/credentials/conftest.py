from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.config import Settings
from salud.credentials import signing
from salud.kit.sealing import Keyring


def keyring_of(settings: Settings) -> Keyring:
    return Keyring.from_config(
        settings.kek_id, settings.kek.get_secret_value(), settings.old_keks.get_secret_value()
    )


@pytest.fixture
async def signing_key(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> str:
    """A signing key in service, as `salud credentials rotate-key` leaves it."""
    async with sessions() as session, session.begin():
        kid = await signing.rotate(session, keyring_of(settings), "prueba")
    return kid
