"""A parent or guardian linked in the registry carries the minor's digital card: the link is
checked on every request, refused when it ended or the minor came of age, and every access
is in the minor's "who looked at my data"."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.credentials.keyset import KeySet
from salud.credentials.verify import verify
from salud.identity.models import Guardianship
from salud.kit.clock import today_mx, utcnow
from tests.conftest import TokenFor
from tests.credentials.test_credentials_api import issued, registered
from tests.factories.persons import person_doc

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key")]


def _bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def _years_ago(years: int, days: int = 0) -> str:
    return (today_mx() - timedelta(days=365 * years + years // 4 + days)).isoformat()


async def test_a_parent_carries_the_minors_card_while_the_link_is_in_force(
    client: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    parent = await registered(client, birth_date="1988-05-06")
    child = await registered(client, birth_date=_years_ago(8))
    grown = await registered(client, birth_date=_years_ago(18, 3))  # 18 a few days ago
    stranger = await registered(client, birth_date="1979-01-02")
    for person in (child, grown):
        await issued(client, person["curp"])
    linked = await client.post(
        f"/api/v1/persons/{child['curp']}/guardians",
        json={"guardian_curp": parent["curp"], "relationship": "mother",
              "reason": "acta de nacimiento"},
    )  # fmt: skip
    assert linked.status_code == 201, linked.text
    async with sessions() as s, s.begin():  # linked while a minor, at an earlier enrollment
        s.add(Guardianship(minor_curp=grown["curp"], guardian_curp=parent["curp"],
                           relationship="mother", source="registro anterior", linked_at=utcnow(),
                           linked_by="operador.prueba"))  # fmt: skip

    mother = token_for(Role.CITIZEN, curp=parent["curp"], username="madre")
    wards = await client.get("/api/v1/me/wards", headers=mother)
    assert wards.status_code == 200, wards.text
    assert [w["curp"] for w in wards.json()] == [child["curp"]]  # the grown one is not
    card = await client.get(f"/api/v1/me/wards/{child['curp']}/digital-card", headers=mother)
    assert card.status_code == 200, card.text
    keys = KeySet.from_jwks((await client.get("/.well-known/jwks.json")).json())
    assert verify(card.json()["qr"], keys).claims.holder.curp == child["curp"]
    assert card.headers["cache-control"] == "no-store"

    # Refused alike: a minor of someone else, a person of age, an unregistered CURP; and the
    # registry's own API stays closed to the parent (the link opens the card, nothing more).
    other = token_for(Role.CITIZEN, curp=stranger["curp"], username="otra")
    for headers, curp in ((other, child["curp"]), (mother, grown["curp"]),
                          (mother, person_doc()["curp"])):  # fmt: skip
        refused = await client.get(f"/api/v1/me/wards/{curp}/digital-card", headers=headers)
        assert refused.status_code == 403, (curp, refused.text)
    assert (await client.get(f"/api/v1/persons/{child['curp']}", headers=mother)).status_code == 403
    bad = await client.get("/api/v1/me/wards/no-es-curp/digital-card", headers=mother)
    assert bad.status_code == 422

    # The parent carries the minor's card: they report it lost from their page (a child has
    # no sign-in); a stranger's report for the child is refused, and nothing is reissued.
    async def report(as_whom: dict[str, str]) -> httpx.Response:
        client.cookies.clear()
        client.cookies.set("salud_session", _bearer(as_whom))
        page = await client.get(f"/credencial/reposicion?de={child['curp']}")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        return await client.post(
            "/credencial/reposicion", data={"csrf": token.group(1), "de": child["curp"]}
        )

    refused = await report(other)
    assert refused.status_code == 403, refused.text
    reported = await report(mother)
    assert reported.status_code == 200, reported.text
    assert f"La tarjeta anterior de {child['curp']} quedó anulada" in reported.text
    client.cookies.clear()
    cards = (await client.get(f"/api/v1/persons/{child['curp']}/credentials")).json()
    assert sorted(c["status"] for c in cards)[-1] == "superseded", cards
    assert len(cards) == 2  # the stranger's attempt reissued nothing

    # The minor's access log shows the parent, and the refused attempt of the stranger.
    auditor = token_for(Role.AUDITOR)
    log = (await client.get(f"/api/v1/persons/{child['curp']}/accesses", headers=auditor)).json()
    seen = {(e["actor"], e["action"], e["outcome"]) for e in log["items"]}
    assert ("madre", "credentials:digital:refresh", "success") in seen
    assert ("madre", "identity:guardian:wards", "success") in seen
    assert ("otra", "identity:guardian:act", "denied") in seen

    # Registry staff end the link: the card is refused from the next refresh on.
    ended = await client.post(f"/api/v1/persons/{child['curp']}/guardians/{parent['curp']}/end",
                              json={"reason": "resolución judicial"})  # fmt: skip
    assert ended.status_code == 200, ended.text
    after = await client.get(f"/api/v1/me/wards/{child['curp']}/digital-card", headers=mother)
    assert after.status_code == 403
    assert (await client.get("/api/v1/me/wards", headers=mother)).json() == []


async def test_one_link_in_force_per_adult_and_minor_and_who_reads_the_links(
    client: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    parent = await registered(client, birth_date="1990-02-03")
    child = await registered(client, birth_date=_years_ago(5))
    url = f"/api/v1/persons/{child['curp']}/guardians"
    reason = "acta de nacimiento"
    body = {"guardian_curp": parent["curp"], "relationship": "father", "reason": reason}
    assert (await client.post(url, json=body)).status_code == 201
    again = await client.post(url, json=body)  # the same link again: nothing new
    assert [x["relationship"] for x in again.json()] == ["father"]
    fixed = await client.post(url, json={**body, "relationship": "guardian"})  # corrected
    assert [(x["relationship"], x["active"]) for x in fixed.json()] == [
        ("father", False),
        ("guardian", True),
    ]
    # Whatever runs at the same time, the database keeps one link in force per pair.
    with pytest.raises(IntegrityError):
        async with sessions() as s, s.begin():
            s.add(Guardianship(minor_curp=child["curp"], guardian_curp=parent["curp"],
                               relationship="mother", source="a la vez", linked_at=utcnow(),
                               linked_by="otro"))  # fmt: skip

    # A clinician with no basis for the child may not read them (and it is recorded).
    doctor = token_for(Role.CLINICIAN, clues="HGIMB000011", username="medico")
    assert (await client.get(url, headers=doctor)).status_code == 403
    auditor = token_for(Role.AUDITOR)
    log = (await client.get(f"{url.rsplit('/', 1)[0]}/accesses", headers=auditor)).json()
    assert ("medico", "identity:guardian:list", "denied") in {
        (e["actor"], e["action"], e["outcome"]) for e in log["items"]
    }
    # Posting a link that is already there answers every link of the minor (the guardians'
    # CURPs): that is a read of the minor's data, recorded like any other.
    other = token_for(Role.SUPERVISOR, username="sup.otro")
    assert (
        await client.post(url, json={**body, "relationship": "guardian"}, headers=other)
    ).status_code == 201
    log = (await client.get(f"{url.rsplit('/', 1)[0]}/accesses", headers=auditor)).json()
    assert ("sup.otro", "identity:guardian:list", "success") in {
        (e["actor"], e["action"], e["outcome"]) for e in log["items"]
    }


async def test_staff_linking_again_a_migrated_link_make_it_theirs(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A link migration 0011 drew from an earlier enrollment, posted again by staff who
    checked the adult's ID, becomes a row of theirs (0018 ends migrated links made without a
    checked ID: a re-checked one must not be taken for one of them)."""
    from sqlalchemy import select

    parent = await registered(client, birth_date="1990-02-03")
    child = await registered(client, birth_date=_years_ago(6))
    async with sessions() as s, s.begin():
        s.add(Guardianship(minor_curp=child["curp"], guardian_curp=parent["curp"],
                           relationship="mother", source="registro R-1", linked_at=utcnow(),
                           linked_by="migracion-0011"))  # fmt: skip
    body = {"guardian_curp": parent["curp"], "relationship": "mother", "reason": "INE revisada"}
    answer = await client.post(f"/api/v1/persons/{child['curp']}/guardians", json=body)
    assert answer.status_code == 201, answer.text
    async with sessions() as s:
        rows = (await s.execute(
            select(Guardianship.linked_by, Guardianship.ended_at.is_(None))
            .where(Guardianship.minor_curp == child["curp"]).order_by(Guardianship.id)
        )).all()  # fmt: skip
    assert len(rows) == 2
    assert tuple(rows[0]) == ("migracion-0011", False)  # ended, kept
    assert rows[1][0] != "migracion-0011"
    assert rows[1][1] is True  # the staff's own, in force
