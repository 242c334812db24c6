"""The registry's input rules at their edges: a CURP is never trimmed, a name whose search key
would not fit is refused, PATCH refuses what it cannot mean, stale concurrent changes are
412, and the hot read refuses unknown query parameters like every other route."""

from __future__ import annotations

import asyncio
from datetime import date

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.identity import curp as curp_rules
from salud.identity.models import Person
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db

BASE = "/api/v1/persons"


def _errors(answer: httpx.Response) -> list[tuple[str, str]]:
    assert answer.headers["content-type"] == "application/problem+json", answer.text
    return [(e["field"], e["reason"]) for e in answer.json()["errors"]]


def long_folded_name_doc() -> dict[str, object]:
    """A person whose given name is 61 characters but 121 once folded («ß» is «SS»): its
    search key does not fit given_names_key (VARCHAR(100); a 500 on PostgreSQL)."""
    given = "S" + "ß" * 60
    doc = person_doc()
    born = date.fromisoformat(str(doc["birth_date"]))
    key = curp_rules.generate(
        given, str(doc["first_surname"]), str(doc["second_surname"]), born, str(doc["sex"]),
        "HG", str(doc["curp"])[16],
    )  # fmt: skip
    return {**doc, "curp": key, "given_names": given}


@pytest.mark.parametrize("padded", [" {}", "{} ", "  {} ", "{}\t"])
async def test_a_padded_curp_is_refused_not_trimmed(client: httpx.AsyncClient, padded: str) -> None:
    doc = person_doc()
    answer = await client.post(BASE, json={**doc, "curp": padded.format(doc["curp"])})
    assert answer.status_code == 422, answer.text
    assert _errors(answer) == [("curp", "la CURP no lleva espacios")]
    assert (await client.get(f"{BASE}/{doc['curp']}")).status_code == 404  # nothing stored


async def test_a_name_too_long_once_folded_is_a_422_on_create_and_change(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post(BASE, json=long_folded_name_doc())
    assert answer.status_code == 422, answer.text
    [(field, reason)] = _errors(answer)
    assert field == "given_names"
    assert "121" in reason
    assert "100" in reason

    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    changed = await client.patch(
        f"{BASE}/{doc['curp']}",
        json={"first_surname": "ß" * 51},  # 51 characters, 102 folded
        headers={"If-Match": 'W/"1"'},
    )
    assert changed.status_code == 422, changed.text
    assert [f for f, _ in _errors(changed)] == ["first_surname"]
    # One that fits folded is still a name (the CURP check comes after).
    assert (await client.get(f"{BASE}/{doc['curp']}")).json()["version"] == 1


async def test_affiliations_null_is_refused_not_a_silent_version(
    client: httpx.AsyncClient,
) -> None:
    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    url = f"{BASE}/{doc['curp']}"
    answer = await client.patch(url, json={"affiliations": None}, headers={"If-Match": 'W/"1"'})
    assert answer.status_code == 422, answer.text
    assert [f for f, _ in _errors(answer)] == ["affiliations"]
    assert (await client.get(url)).json()["version"] == 1
    cleared = await client.patch(url, json={"affiliations": []}, headers={"If-Match": 'W/"1"'})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["affiliations"] == []


async def test_an_organ_donor_date_before_birth_is_refused(client: httpx.AsyncClient) -> None:
    doc = person_doc(organ_donor="yes", organ_donor_date="1901-01-01")
    answer = await client.post(BASE, json=doc)
    assert answer.status_code == 422, answer.text
    [(field, reason)] = _errors(answer)
    assert field == "organ_donor_date"
    assert str(doc["birth_date"]) in reason

    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    changed = await client.patch(
        f"{BASE}/{doc['curp']}",
        json={"organ_donor": "no", "organ_donor_date": "1901-01-01"},
        headers={"If-Match": 'W/"1"'},
    )
    assert changed.status_code == 422, changed.text
    assert [f for f, _ in _errors(changed)] == ["organ_donor_date"]
    on_birthday = await client.patch(
        f"{BASE}/{doc['curp']}",
        json={"organ_donor": "no", "organ_donor_date": doc["birth_date"]},
        headers={"If-Match": 'W/"1"'},
    )
    assert on_birthday.status_code == 200, on_birthday.text


async def test_a_row_stored_before_a_rule_does_not_block_other_changes(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A donor date before birth and a unit the catalog does not hold, stored before the
    checks existed: a change of the phone, or a client sending the record back whole with
    those values unchanged, is not refused for them."""
    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    async with sessions() as s, s.begin():
        await s.execute(
            update(Person).where(Person.curp == doc["curp"])
            .values(organ_donor="yes", organ_donor_date=date(1901, 1, 1),
                    assigned_clues="HGIMB999999")
        )  # fmt: skip
    phone = await client.patch(f"{BASE}/{doc['curp']}", json={"phone": "+525512345678"},
                               headers={"If-Match": 'W/"1"'})  # fmt: skip
    assert phone.status_code == 200, phone.text
    whole = await client.patch(f"{BASE}/{doc['curp']}", json={"assigned_clues": "HGIMB999999"},
                               headers={"If-Match": 'W/"2"'})  # fmt: skip
    assert whole.status_code == 200, whole.text


async def test_concurrent_changes_of_one_version_one_wins_the_rest_are_412(
    client: httpx.AsyncClient,
) -> None:
    """On SQLite (no row lock) the losers hit the snapshot table's unique index before the
    compare-and-set, and were a 409; a stale version is a 412 on both databases."""
    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    url = f"{BASE}/{doc['curp']}"
    answers = await asyncio.gather(
        *(
            client.patch(url, json={"phone": f"+5277112345{i:02d}"}, headers={"If-Match": 'W/"1"'})
            for i in range(6)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [412] * 5, [a.text for a in answers]
    assert all(_errors(a)[0][0] == "If-Match" for a in answers if a.status_code == 412)
    history = (await client.get(f"{url}/history")).json()
    assert [v["version"] for v in history] == [1, 2]


async def test_the_hot_read_refuses_unknown_query_parameters(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    assert (await client.post(BASE, json=doc)).status_code == 201
    answer = await client.get(f"{BASE}/{doc['curp']}", params={"campo": "x", "fields": "y"})
    assert answer.status_code == 422, answer.text
    assert [f for f, _ in _errors(answer)] == ["campo", "fields"]
    assert (await client.get(f"{BASE}/{doc['curp']}")).status_code == 200
