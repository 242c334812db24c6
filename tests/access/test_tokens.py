"""Bearer tokens: signature, expiry and the verified-token cache."""

from __future__ import annotations

import time

import pytest

from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.errors import Unauthorized

WHO = Principal("account:7", "ana.clinica", Role.CLINICIAN, 2, "HGIMS000010")


def test_round_trip() -> None:
    tokens = TokenService("s" * 40, 60)
    assert tokens.principal(tokens.issue(WHO)) == WHO
    assert tokens.principal(tokens.issue(WHO)) == WHO  # cached path


def test_other_key_and_tampering_are_refused() -> None:
    mine, theirs = TokenService("a" * 40, 60), TokenService("b" * 40, 60)
    token = theirs.issue(WHO)
    with pytest.raises(Unauthorized):
        mine.principal(token)
    header, body, sig = mine.issue(WHO).split(".")
    forged = ".".join((header, body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1], sig))
    with pytest.raises(Unauthorized):
        mine.principal(forged)


def test_expired_token_is_refused_even_after_being_cached() -> None:
    tokens = TokenService("c" * 40, 1)
    token = tokens.issue(WHO)
    assert tokens.principal(token) == WHO
    time.sleep(2.1)
    with pytest.raises(Unauthorized):
        tokens.principal(token)
