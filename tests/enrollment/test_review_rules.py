"""The supervisors' checks: four eyes on exceptions and duplicate reviews, a CURP judged the
same person as another stays out until the registry is corrected, a pair judged two people
is not asked again, and an enrollment held in review can be cancelled (its reviews closed)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.enrollment.models import DuplicateReview, Enrollment
from salud.identity import curp as curp_rules
from salud.identity.synth import synthetic_face
from salud.kit.clock import today_mx
from tests.conftest import TokenFor
from tests.enrollment.conftest import MODULE, Drive, E, open_module
from tests.enrollment.test_enrollment import adult_documents, capture, start
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


async def twins(
    c: httpx.AsyncClient, drive: Drive, given: str = "JUANA"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A person in the registry and the data of a homonym under another CURP (same names,
    birth date and state): starting the second puts it in review."""
    first = person_doc(given_names=given, first_surname="PÉREZ", second_surname="LÓPEZ",
                       birth_date="1980-01-02", sex="M")  # fmt: skip
    made = await c.post("/api/v1/persons", json=first, headers=drive.supervisor)
    assert made.status_code == 201, made.text
    other = str((int(first["curp"][16]) + 1) % 10)
    twin_curp = curp_rules.generate(given, "PÉREZ", "LÓPEZ", date(1980, 1, 2), "M", "HG", other)
    return first, {**first, "curp": twin_curp}


async def _queue(c: httpx.AsyncClient, drive: Drive, status: str = "pending") -> list[Any]:
    found = await c.get(f"{E}/reviews", params={"status": status}, headers=drive.supervisor)
    assert found.status_code == 200, found.text
    result: list[Any] = found.json()
    return result


async def test_a_supervisor_never_approves_nor_decides_on_their_own_enrollment(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    """Four eyes: the supervisor who does an enrollment could otherwise excuse every
    document and the prints, and complete it alone."""
    other = token_for(Role.SUPERVISOR, username="supervisora.dos", module=MODULE)
    doc = person_doc()
    mine = await anonymous.post(
        f"{E}/enrollments", json={"curp": doc["curp"], "person": doc}, headers=drive.supervisor
    )
    assert mine.status_code == 201, mine.text
    folio = mine.json()["folio"]
    body = {"waive": ["photo_id", "curp", "address_proof"], "waive_fingerprints": True,
            "reason": "sin documentos el día de hoy"}  # fmt: skip
    refused = await anonymous.post(
        f"{E}/enrollments/{folio}/exception", json=body, headers=drive.supervisor
    )
    assert refused.status_code == 403, refused.text
    assert "supervisor distinto de quien hace el registro" in refused.json()["detail"]
    state = await anonymous.get(f"{E}/enrollments/{folio}", headers=drive.supervisor)
    assert state.json()["waived"] == []
    approved = await anonymous.post(f"{E}/enrollments/{folio}/exception", json=body, headers=other)
    assert approved.status_code == 200, approved.text
    # A review of an enrollment the supervisor started: decided by another one only.
    _, twin = await twins(anonymous, drive)
    held = await anonymous.post(
        f"{E}/enrollments", json={"curp": twin["curp"], "person": twin}, headers=drive.supervisor
    )
    assert held.json()["status"] == "review", held.text
    [review] = await _queue(anonymous, drive)
    own = await anonymous.post(
        f"{E}/reviews/{review['id']}", json={"decision": "distinct"}, headers=drive.supervisor
    )
    assert own.status_code == 403, own.text
    assert "supervisor distinto" in own.json()["detail"]
    decided = await anonymous.post(
        f"{E}/reviews/{review['id']}", json={"decision": "distinct"}, headers=other
    )
    assert decided.status_code == 200, decided.text


async def test_a_curp_judged_the_same_person_does_not_start_again(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str
) -> None:
    """Decided `duplicate`, the CURP came back at once and a later `distinct` let it
    complete: a second card for one person."""
    first, twin = await twins(anonymous, drive)
    held = await start(anonymous, drive, twin)
    assert held.json()["status"] == "review"
    [review] = await _queue(anonymous, drive)
    same = await anonymous.post(
        f"{E}/reviews/{review['id']}", json={"decision": "duplicate"}, headers=drive.supervisor
    )
    assert same.status_code == 200, same.text
    again = await start(anonymous, drive, twin, registered=True)
    assert again.status_code == 409, again.text
    detail = again.json()["detail"]
    assert f"revisión {review['id']}" in detail
    assert first["curp"] in detail
    assert again.json()["errors"][0]["field"] == "curp"
    assert await _queue(anonymous, drive) == []


async def test_a_pair_judged_two_people_is_not_asked_again(
    anonymous: httpx.AsyncClient, drive: Drive, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Judged distinct, the enrollment is cancelled (the person left) and started again:
    the same pair went back to the queue; nor is it asked when the other CURP enrolls."""
    first, twin = await twins(anonymous, drive)
    folio = (await start(anonymous, drive, twin)).json()["folio"]
    [review] = await _queue(anonymous, drive)
    distinct = await anonymous.post(
        f"{E}/reviews/{review['id']}", json={"decision": "distinct"}, headers=drive.supervisor
    )
    assert distinct.status_code == 200, distinct.text
    left = await anonymous.post(f"{E}/enrollments/{folio}/cancel", headers=drive.operator,
                                json={"reason": "la persona se retiró"})  # fmt: skip
    assert left.status_code == 200, left.text
    again = await start(anonymous, drive, twin, registered=True)
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "open"
    other_side = await start(anonymous, drive, first, registered=True)
    assert other_side.json()["status"] == "open"
    assert await _queue(anonymous, drive) == []


async def test_an_enrollment_held_in_review_is_cancelled_with_its_reviews(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """Left in review on an earlier day it blocked the person at every module, and
    `cancel` refused anything not open."""
    _, twin = await twins(anonymous, drive)
    folio = (await start(anonymous, drive, twin)).json()["folio"]
    elsewhere = await open_module(anonymous, token_for, code="MR-13-0009")
    assert (
        await anonymous.post(
            f"{E}/enrollments/{folio}/cancel",
            headers=elsewhere.operator,
            json={"reason": "CURP capturada por error"},
        )
    ).status_code == 403
    done = await anonymous.post(f"{E}/enrollments/{folio}/cancel", headers=drive.operator,
                                json={"reason": "CURP capturada por error"})  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    [closed] = await _queue(anonymous, drive, "cancelled")
    assert closed["enrollment_folio"] == folio
    assert await _queue(anonymous, drive) == []
    # In review since an earlier day at one module: a start at another cancels it, with
    # its review.
    held = await start(anonymous, drive, twin, registered=True)
    assert held.json()["status"] == "review"
    async with sessions() as s, s.begin():
        await s.execute(update(Enrollment).where(Enrollment.folio == held.json()["folio"])
                        .values(visit_day=today_mx() - timedelta(days=2)))  # fmt: skip
    moved = await anonymous.post(f"{E}/enrollments", json={"curp": twin["curp"]},
                                 headers=elsewhere.operator)  # fmt: skip
    assert moved.status_code == 201, moved.text
    old = await anonymous.get(f"{E}/enrollments/{held.json()['folio']}", headers=drive.operator)
    assert old.json()["status"] == "cancelled"
    async with sessions() as s:
        statuses = (await s.execute(select(DuplicateReview.status)
                                    .order_by(DuplicateReview.id))).scalars().all()  # fmt: skip
    assert statuses == ["cancelled", "cancelled", "pending"]  # the new one, at the new module


async def test_a_duplicate_decided_closes_the_other_reviews_as_cancelled(
    anonymous: httpx.AsyncClient, drive: Drive
) -> None:
    same = dict(given_names="PEDRO", first_surname="RAMOS", second_surname="LUNA",
                birth_date="1981-03-04", sex="H")  # fmt: skip
    for _ in range(2):
        made = await anonymous.post(
            "/api/v1/persons", json=person_doc(**same), headers=drive.supervisor
        )
        assert made.status_code == 201, made.text
    await start(anonymous, drive, person_doc(**same))
    first, second = await _queue(anonymous, drive)
    decided = await anonymous.post(
        f"{E}/reviews/{first['id']}", json={"decision": "duplicate"}, headers=drive.supervisor
    )
    assert decided.status_code == 200, decided.text
    [closed] = await _queue(anonymous, drive, "cancelled")
    assert closed["id"] == second["id"]
    moot = await anonymous.post(
        f"{E}/reviews/{second['id']}", json={"decision": "distinct"}, headers=drive.supervisor
    )
    assert moot.status_code == 409
    assert "cancelada" in moot.json()["detail"]


async def test_every_exception_is_kept(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor, signing_key: str
) -> None:
    """A second exception replaced who approved the first (and why), while `waived` kept
    what both excused."""
    other = token_for(Role.SUPERVISOR, username="supervisora.dos", module=MODULE)
    folio = (await start(anonymous, drive, person_doc())).json()["folio"]
    url = f"{E}/enrollments/{folio}/exception"
    one = await anonymous.post(url, headers=drive.supervisor, json={
        "waive": ["address_proof"], "reason": "vive en albergue tras la inundación"})  # fmt: skip
    assert one.status_code == 200, one.text
    two = await anonymous.post(url, headers=other, json={
        "waive_fingerprints": True, "reason": "amputación de ambas manos"})  # fmt: skip
    assert two.status_code == 200, two.text
    state = two.json()
    assert [(x["by"], x["reason"], x["waived"]) for x in state["exceptions"]] == [
        ("supervisor.prueba", "vive en albergue tras la inundación", ["address_proof"]),
        ("supervisora.dos", "amputación de ambas manos", ["fingerprints"]),
    ]
    assert all(x["at"] for x in state["exceptions"])
    assert state["waived"] == ["address_proof", "fingerprints"]
    assert (state["exception_by"], state["exception_reason"]) == (
        "supervisora.dos",
        "amputación de ambas manos",
    )
    await anonymous.put(f"{E}/enrollments/{folio}/documents", headers=drive.operator,
                        json=adult_documents())  # fmt: skip
    read = await anonymous.get(f"{E}/enrollments/{folio}", headers=drive.operator)
    assert len(read.json()["exceptions"]) == 2
    await capture(anonymous, drive, folio, 12)
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert done.status_code == 200, done.text


async def test_a_supervisor_who_carries_on_an_enrollment_does_not_do_it_alone(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession], signing_key: str,
) -> None:  # fmt: skip
    """Four eyes judged only who started the enrollment: a supervisor who resumed an
    operator's enrollment excused every document and the prints and completed it alone;
    one who approved the exceptions and then carried it on completed it too; and one who
    resumed an enrollment held in review decided its review."""
    other = token_for(Role.SUPERVISOR, username="supervisora.dos", module=MODULE)
    sup = drive.supervisor
    body = {"waive": ["photo_id", "curp", "address_proof"], "waive_fingerprints": True,
            "reason": "sin documentos el día de hoy"}  # fmt: skip

    async def photo(folio: str, seed: int, h: dict[str, str]) -> None:
        taken = await anonymous.put(f"{E}/enrollments/{folio}/photo", content=synthetic_face(seed),
                                    headers={**h, "content-type": "image/jpeg"})  # fmt: skip
        assert taken.status_code == 200, taken.text

    # The operator starts; days later the supervisor resumes it and is its operator now.
    doc = person_doc()
    folio = (await start(anonymous, drive, doc)).json()["folio"]
    async with sessions() as s, s.begin():
        await s.execute(update(Enrollment).where(Enrollment.folio == folio)
                        .values(visit_day=today_mx() - timedelta(days=3)))  # fmt: skip
    again = await anonymous.post(f"{E}/enrollments", json={"curp": doc["curp"]}, headers=sup)
    assert again.status_code == 200, again.text
    assert again.json()["operator"] == "supervisor.prueba"
    own = await anonymous.post(f"{E}/enrollments/{folio}/exception", json=body, headers=sup)
    assert own.status_code == 403, own.text
    assert "supervisor distinto de quien hace el registro" in own.json()["detail"]
    await photo(folio, 31, sup)
    alone = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=sup)
    assert alone.status_code == 409, alone.text  # nothing was excused: documents missing
    # Another supervisor excuses them: the one doing the enrollment completes it.
    assert (await anonymous.post(f"{E}/enrollments/{folio}/exception", json=body,
                                 headers=other)).status_code == 200  # fmt: skip
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=sup)
    assert done.status_code == 200, done.text

    # The supervisor approves the exceptions of the operator's enrollment, then carries it
    # on: they do not complete it; the operator, back at it, does.
    doc2 = person_doc()
    folio2 = (await start(anonymous, drive, doc2)).json()["folio"]
    approved = await anonymous.post(f"{E}/enrollments/{folio2}/exception", json=body, headers=sup)
    assert approved.status_code == 200, approved.text
    taken = await anonymous.post(f"{E}/enrollments", json={"curp": doc2["curp"]}, headers=sup)
    assert taken.json()["operator"] == "supervisor.prueba", taken.text
    await photo(folio2, 32, sup)
    refused = await anonymous.post(f"{E}/enrollments/{folio2}/complete", headers=sup)
    assert refused.status_code == 403, refused.text
    assert "aprobó una excepción de este registro" in refused.json()["detail"]
    state = await anonymous.get(f"{E}/enrollments/{folio2}", headers=sup)
    assert state.json()["status"] == "open"
    back = await start(anonymous, drive, doc2, registered=True)
    assert back.json()["operator"] == "operador.prueba", back.text
    finished = await anonymous.post(f"{E}/enrollments/{folio2}/complete", headers=drive.operator)
    assert finished.status_code == 200, finished.text

    # An enrollment held in review, carried on by the supervisor: its review is another's.
    _, twin = await twins(anonymous, drive)
    held = await start(anonymous, drive, twin)
    assert held.json()["status"] == "review", held.text
    resumed = await anonymous.post(f"{E}/enrollments", json={"curp": twin["curp"]}, headers=sup)
    assert resumed.status_code == 200, resumed.text
    [review] = await _queue(anonymous, drive)
    mine = await anonymous.post(
        f"{E}/reviews/{review['id']}", json={"decision": "distinct"}, headers=sup
    )
    assert mine.status_code == 403, mine.text
    decided = await anonymous.post(
        f"{E}/reviews/{review['id']}", json={"decision": "distinct"}, headers=other
    )
    assert decided.status_code == 200, decided.text
