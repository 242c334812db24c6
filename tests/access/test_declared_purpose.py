"""What a caller may declare as the purpose of an access (X-Salud-Purpose): a basis the system
establishes (care, consent, emergency) or a purpose of the system's own paths cannot be
declared; a receptionist's read was shown to the person as an emergency (FHIR ETREAT)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.web.privacy import PURPOSES
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

SRC = Path(__file__).resolve().parents[2] / "src" / "salud"


@pytest.mark.db
@pytest.mark.parametrize(
    "declared",
    ["emergency", "care", "consent", "Emergency", " emergency ", "emergencia", "tutor",
     "importacion", "mis datos", "verificacion", "validacion-publica"],
)  # fmt: skip
async def test_a_purpose_the_system_records_cannot_be_declared(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession], declared: str,
) -> None:  # fmt: skip
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    headers = {**token_for(Role.VERIFIER, username="recepcion.x"), "X-Salud-Purpose": declared}
    answer = await anonymous.get(f"/api/v1/persons/{doc['curp']}", headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    [problem] = answer.json()["errors"]
    assert problem["field"] == "X-Salud-Purpose"
    assert "lo registra el sistema" in problem["reason"]
    async with sessions() as session:
        actors = set(await session.scalars(
            select(AuditEvent.actor).where(AuditEvent.person_curp == doc["curp"])))  # fmt: skip
    assert "recepcion.x" not in actors  # refused before anything was read


@pytest.mark.db
async def test_a_purpose_in_the_callers_words_is_recorded_as_said(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    said = "control de acceso en recepcion"
    headers = {**token_for(Role.VERIFIER), "X-Salud-Purpose": said}
    assert (await anonymous.get(f"/api/v1/persons/{doc['curp']}", headers=headers)).is_success
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    log = (await anonymous.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=me)).json()
    assert [e["purpose"] for e in log["items"] if e["action"] == "identity:person:read"] == [said]


# Where the code states a purpose: a Caller's or an entry's `purpose="…"`, a page's
# `_caller(request, "…")`, a module's PURPOSE constant, and the bases care.py returns.
_STATED = (
    re.compile(r'purpose="([^"]+)"'),
    re.compile(r'_caller\(request, "([^"]+)"\)'),
    re.compile(r'^PURPOSE = "([^"]+)"', re.MULTILINE),
    re.compile(r'return "(care|consent|emergency)", '),
)


def test_every_purpose_the_code_records_is_reserved() -> None:
    from salud.access.schemas import SYSTEM_PURPOSES, is_system_purpose

    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in _STATED:
            for purpose in pattern.findall(text):
                found.setdefault(purpose, str(path.relative_to(SRC)))
    assert {"emergency", "care", "consent", "tutor", "importacion"} <= set(found)
    missing = {p: where for p, where in found.items() if p not in SYSTEM_PURPOSES}
    assert not missing, f"purposes the code records, not in SYSTEM_PURPOSES: {missing}"
    # The person's page words each of them: each is one the system records.
    assert set(PURPOSES) <= SYSTEM_PURPOSES
    assert all(is_system_purpose(p) for p in SYSTEM_PURPOSES)
    assert is_system_purpose("Importación")
    assert is_system_purpose("validación pública")
    assert not is_system_purpose("atencion")  # a client's own word (not the page's wording)


@pytest.mark.db
async def test_a_purpose_written_in_utf8_is_read_as_written(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Headers arrive decoded as Latin-1: an accented purpose was recorded garbled
    ("VerificaciÃ³n") and so escaped the check of the purposes the system records."""
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    url = f"/api/v1/persons/{doc['curp']}"
    reserved = {**token_for(Role.VERIFIER), "X-Salud-Purpose": "Verificación".encode()}
    assert (await anonymous.get(url, headers=reserved)).status_code == 422
    said = "revisión en recepción"
    headers = {**token_for(Role.VERIFIER), "X-Salud-Purpose": said.encode()}
    assert (await anonymous.get(url, headers=headers)).is_success
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    log = (await anonymous.get(f"{url}/accesses", headers=me)).json()
    assert said in [e["purpose"] for e in log["items"]]
