"""A card's life cycle under concurrent changes (one after the other on SQLite too), the way
back from a mistaken revocation (reinstatement), and its states in the desk's words."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.context import Caller
from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.credentials import service
from salud.credentials.models import Credential, CredentialEvent
from salud.credentials.schemas import Status, StatusChange
from salud.errors import Conflict
from tests.conftest import TokenFor
from tests.credentials.test_credentials_api import (
    back_of,
    issued,
    registered,
    signed_qr_of,
    validate,
)

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key")]
ROUNDS = 4  # each race a few times: the order the two requests meet in varies
ENGLISH = re.compile(r"\b(" + "|".join(s.value for s in Status) + r")\b")


def _cards(listed: httpx.Response) -> list[tuple[int, str, bool]]:
    return [(c["sequence"], c["status"], c["digital_active"]) for c in listed.json()]


async def test_a_reissue_racing_a_suspension_never_lifts_it(client: httpx.AsyncClient) -> None:
    for _ in range(ROUNDS):
        doc = await registered(client)
        card = await issued(client, doc["curp"])
        url = f"/api/v1/persons/{doc['curp']}/credentials"
        reissue, suspend = await asyncio.gather(
            client.post(url, json={"reason": "lost"}),
            client.post(
                f"/api/v1/credentials/{card['credential_id']}/status",
                json={"status": "suspended"},
            ),
        )
        listed = _cards(await client.get(url))
        # One of the two, never both: a suspension lifted by a reissue, or a card suspended
        # after it was replaced, is the lost update SQLite gave.
        assert [reissue.status_code, suspend.status_code] in ([201, 409], [409, 200]), (
            reissue.text, suspend.text,
        )  # fmt: skip
        if reissue.status_code == 201:
            assert listed == [(1, "superseded", False), (2, "issued", True)]
            assert "reemplazada" in suspend.json()["detail"]
        else:
            assert listed == [(1, "suspended", False)]
            assert "suspendida" in reissue.json()["detail"]


async def test_a_revocation_racing_a_suspension_stays_a_revocation(
    client: httpx.AsyncClient,
) -> None:
    """Whichever comes first, the card ends revoked: a suspension after the revocation is
    refused, and a revocation after the suspension revokes the suspended card. SQLite gave
    both a 200 over the same old state and left it suspended, and its reactivation then
    answered a revoked card with its digital card on."""
    for _ in range(ROUNDS):
        doc = await registered(client)
        card = await issued(client, doc["curp"])
        url = f"/api/v1/credentials/{card['credential_id']}/status"
        revoke, suspend = await asyncio.gather(
            client.post(url, json={"status": "revoked"}),
            client.post(url, json={"status": "suspended"}),
        )
        assert revoke.status_code == 200, revoke.text
        assert suspend.status_code in (200, 409), suspend.text
        if suspend.status_code == 409:
            assert "revocada" in suspend.json()["detail"]
        listed = _cards(await client.get(f"/api/v1/persons/{doc['curp']}/credentials"))
        assert listed == [(1, "revoked", False)]
        active = await client.post(url, json={"status": "active"})
        assert active.status_code == 409, active.text
        assert _cards(await client.get(f"/api/v1/persons/{doc['curp']}/credentials")) == listed


async def test_of_reissues_at_the_same_moment_one_wins_and_the_others_are_told_which(
    client: httpx.AsyncClient,
) -> None:
    """The losers waited for the winner (a row lock on PostgreSQL, the write lock on SQLite)
    and find the card they were to replace already replaced: a 409 naming the card that
    replaced it and saying to look at the person's cards, never "there is no card to
    replace", nor a second reissue voiding the card just made. (It said "reintente": a
    retry would have voided the card the winner had just issued.)"""
    doc = await registered(client)
    first = await issued(client, doc["curp"])
    url = f"/api/v1/persons/{doc['curp']}/credentials"
    answers = await asyncio.gather(
        *(client.post(url, json={"reason": r}) for r in ("lost", "damaged", "renewal"))
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409], [a.text for a in answers]
    [won] = [a.json() for a in answers if a.status_code == 201]
    for lost in (a for a in answers if a.status_code == 409):
        detail = lost.json()["detail"]
        assert "reintente" not in detail, detail
        assert (
            f"reemplazó la credencial {first['credential_id']} por la credencial "
            f"{won['credential_id']} (núm. 2)" in detail
        ), detail
        assert "consulte sus credenciales" in detail
    assert _cards(await client.get(url)) == [(1, "superseded", False), (2, "issued", True)]


async def test_a_supervisor_reinstates_a_card_revoked_by_mistake(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    old_qr = signed_qr_of(await back_of(client, card["credential_id"]))
    url = f"/api/v1/persons/{doc['curp']}/credentials"
    early = await client.post(url, json={"reason": "reinstatement", "note": "sin revocar aún"})
    assert early.status_code == 409  # the card is current: a reinstatement replaces nothing
    assert "reason" in early.text
    revoked = await client.post(
        f"/api/v1/credentials/{card['credential_id']}/status",
        json={"status": "revoked", "note": "se revocó por error (otra persona)"},
    )  # fmt: skip
    assert revoked.status_code == 200
    # A reissue replaces a current card; after a revocation it says what can be done.
    refused = await client.post(url, json={"reason": "lost"})
    assert refused.status_code == 409
    assert "reinstatement" in refused.json()["detail"]
    # Only a supervisor (who may revoke), and never without saying why.
    for role in (Role.REGISTRATION_OPERATOR, Role.CITIZEN):
        headers = token_for(role, curp=doc["curp"] if role is Role.CITIZEN else None)
        denied = await anonymous.post(
            url, json={"reason": "reinstatement", "note": "error"}, headers=headers
        )
        assert denied.status_code == 403, (role, denied.text)
    for body in ({"reason": "reinstatement"}, {"reason": "reinstatement", "note": "  "}):
        bare = await client.post(url, json=body)
        assert bare.status_code == 422, bare.text
        assert bare.json()["errors"][0]["field"] == "note", bare.text
    why = "la revocación fue un error de captura: folio de queja 123"
    again = await client.post(url, json={"reason": "reinstatement", "note": why})
    assert again.status_code == 201, again.text
    new = again.json()
    assert (new["sequence"], new["reason"], new["status"]) == (2, "reinstatement", "issued")
    assert [(c["sequence"], c["status"]) for c in (await client.get(url)).json()] == [
        (1, "revoked"), (2, "issued"),
    ]  # fmt: skip
    # The revoked card stays revoked; the new one validates.
    assert (await validate(client, token_for, old_qr))["card"] == "revoked"
    new_qr = signed_qr_of(await back_of(client, new["credential_id"]))
    assert (await validate(client, token_for, new_qr))["verdict"] == "valid"
    # The why is in the card's history and in the audit log.
    async with sessions() as session:
        notes = (
            await session.scalars(
                select(CredentialEvent.note)
                .join(Credential, Credential.id == CredentialEvent.credential_pk)
                .where(Credential.credential_id == new["credential_id"])
            )
        ).all()
        entries = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "credentials:credential:issue",
                    AuditEvent.subject_id == new["credential_id"],
                )
            )
        ).all()
    assert notes == [f"reinstatement: {why}"]
    assert [(e.detail or {}).get("note") for e in entries] == [why]
    assert [(e.detail or {}).get("after_revoked") for e in entries] == [card["credential_id"]]
    # A second reinstatement has nothing to undo: the new card is current.
    twice = await client.post(url, json={"reason": "reinstatement", "note": why})
    assert twice.status_code == 409


async def test_a_reinstatement_needs_a_revoked_card(client: httpx.AsyncClient) -> None:
    doc = await registered(client)
    url = f"/api/v1/persons/{doc['curp']}/credentials"
    answer = await client.post(url, json={"reason": "reinstatement", "note": "sin tarjeta"})
    assert answer.status_code == 409
    assert "primera se expide" in answer.json()["detail"]


async def test_every_state_reads_in_spanish_at_the_desk(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The desk shows the service's messages as they are: a card's state in them is Spanish
    (`service.STATUS_NAMES`), whatever state it is in."""
    assert set(service.STATUS_NAMES) == set(Status)
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    cid = card["credential_id"]
    app = client._transport.app  # type: ignore[attr-defined]
    who = Principal("account:supervisor", "supervisor.prueba", Role.SUPERVISOR, 10)
    said: dict[Status, list[str]] = {}
    for status in Status:
        async with sessions() as session, session.begin():
            await session.execute(
                update(Credential).where(Credential.credential_id == cid).values(status=status)
            )
        said[status] = []
        for attempt in ("deliver", "print", "suspend"):
            async with sessions() as session, session.begin():
                caller = Caller(who, app.state.audit, "prueba")
                try:
                    if attempt == "deliver":
                        await service.plastic_step(session, cid, "delivered", None, caller)
                    elif attempt == "print":
                        await service.print_file(
                            session, app.state.keyring, app.state.credential_config, [cid],
                            caller,
                        )  # fmt: skip
                    else:
                        suspend = StatusChange(status="suspended")
                        await service.change_status(session, cid, suspend, caller)
                except Conflict as refused:
                    said[status].append(refused.detail)
                await session.rollback()
    for status, messages in said.items():
        assert messages, status
        for message in messages:
            assert not ENGLISH.search(message), (status, message)
        if status is not Status.READY_FOR_PICKUP:  # the one state that goes on to delivered
            assert f"«{service.STATUS_NAMES[status]}»" in messages[0], (status, messages)
    assert "está revocada: ya no cambia" in said[Status.REVOKED][-1]
    assert "ya está suspendida" in said[Status.SUSPENDED][-1]
    assert "está impresa: solo se imprime" in said[Status.PRINTED][1]
