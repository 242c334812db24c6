"""Work left under way is resumed at its module (docs/enrollment.md, "Left open"), judged on
the day it is resumed; and only the photo this enrollment took counts towards it."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.models import AuditEvent
from salud.enrollment.documents import months_before
from salud.enrollment.models import Enrollment
from salud.identity.synth import synthetic_face
from salud.kit.clock import today_mx
from tests.enrollment.conftest import Drive, E
from tests.enrollment.test_enrollment import adult_documents, capture, start
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


async def test_work_left_open_is_resumed_at_its_module_and_judged_today(
    anonymous: httpx.AsyncClient, drive: Drive, sessions: async_sessionmaker[AsyncSession],
    signing_key: str,
) -> None:  # fmt: skip
    """Starting the CURP again at the same module on a later day cancelled the enrollment
    and opened another (the photo and prints taken were asked again)."""
    doc = person_doc()
    folio = (await start(anonymous, drive, doc)).json()["folio"]
    first_day = today_mx() - timedelta(days=20)
    # A proof of address just within six months of the first day, older than six months today.
    proof = months_before(first_day, 6) + timedelta(days=1)
    saved = await anonymous.put(f"{E}/enrollments/{folio}/documents", headers=drive.operator,
                                json=adult_documents(address_on=proof))  # fmt: skip
    assert saved.status_code == 200, saved.text
    await capture(anonymous, drive, folio, 21)
    async with sessions() as s, s.begin():
        await s.execute(update(Enrollment).where(Enrollment.folio == folio)
                        .values(visit_day=first_day))  # fmt: skip
    listed = await anonymous.get(f"{E}/enrollments", headers=drive.operator)
    assert listed.status_code == 200, listed.text
    [row] = listed.json()
    assert (row["folio"], row["curp"], row["status"]) == (folio, doc["curp"], "open")
    assert row["missing"]
    assert "Comprobante" in row["missing"][0]
    # The page the list links to judges it on the same day, today (it judged the first day
    # and said nothing was missing).
    page = await anonymous.get(f"{E}/enrollments/{folio}", headers=drive.operator)
    assert page.json()["visit_day"] == first_day.isoformat()
    assert [m["label"] for m in page.json()["missing"]] == row["missing"]
    again = await start(anonymous, drive, doc, registered=True)
    assert again.status_code == 200, again.text
    resumed = again.json()
    assert resumed["folio"] == folio
    assert resumed["visit_day"] == today_mx().isoformat()
    assert resumed["has_photo"]
    assert resumed["fingers"] == [2, 7]
    assert [m["item"] for m in resumed["missing"]] == ["address_proof"]
    assert "más de 6 meses" in resumed["missing"][0]["reason"]
    async with sessions() as s:
        statuses = (await s.execute(select(Enrollment.status))).scalars().all()
        starts = (await s.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "enrollment:enrollment:start"))).scalars().all()  # fmt: skip
    assert statuses == ["open"]
    assert [d.get("resumed", False) for d in starts] == [False, True]
    fresh = await anonymous.put(f"{E}/enrollments/{folio}/documents", headers=drive.operator,
                                json=adult_documents())  # fmt: skip
    assert fresh.json()["missing"] == []
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert done.status_code == 200, done.text


async def test_a_photo_put_through_the_registry_does_not_count_for_the_enrollment(
    anonymous: httpx.AsyncClient, drive: Drive
) -> None:
    """Any photo updated after the enrollment started counted, even one a machine client or
    anyone with person:update put through the registry's API during the visit."""
    doc = person_doc()
    folio = (await start(anonymous, drive, doc)).json()["folio"]

    async def registry_photo(seed: int) -> None:
        put = await anonymous.put(
            f"/api/v1/persons/{doc['curp']}/photo", content=synthetic_face(seed),
            headers={**drive.supervisor, "Content-Type": "image/jpeg"},
        )  # fmt: skip
        assert put.status_code == 204, put.text

    async def has_photo() -> bool:
        found = await anonymous.get(f"{E}/enrollments/{folio}", headers=drive.operator)
        return bool(found.json()["has_photo"])

    await registry_photo(5)
    assert not await has_photo()
    taken = await anonymous.put(
        f"{E}/enrollments/{folio}/photo", content=synthetic_face(6),
        headers={**drive.operator, "content-type": "image/jpeg"},
    )  # fmt: skip
    assert taken.json()["has_photo"] is True
    await registry_photo(7)  # replaces the one the module took: the card would show this one
    assert not await has_photo()
