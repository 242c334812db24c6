"""Enrollment at the module: documents, photo, fingerprints, duplicates, exceptions, and the
credential issued at completion (the digital card works at once)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditLog
from salud.access.context import Caller
from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.schemas import AccountCreate
from salud.access.service import create_account
from salud.cli.credentials import config_of
from salud.config import Settings
from salud.credentials.signing import Signer
from salud.enrollment.models import Appointment, Enrollment, Fingerprint
from salud.enrollment.schemas import EnrollmentRead
from salud.enrollment.service import Issuance, complete
from salud.identity import curp as curp_rules
from salud.identity.synth import synthetic_face, synthetic_fingerprint
from salud.kit.clock import today_mx
from tests.conftest import TokenFor, keyring_of
from tests.enrollment.conftest import MODULE, Drive, E, open_module
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


def adult_documents(address_on: date | None = None) -> dict[str, Any]:
    proof = address_on or today_mx() - timedelta(days=30)
    return {
        "documents": [
            {"kind": "photo_id", "reference": "INE 123"},
            {"kind": "curp"},
            {"kind": "address_proof", "issued_on": proof.isoformat()},
        ]
    }


async def start(
    c: httpx.AsyncClient, drive: Drive, doc: dict[str, Any], registered: bool = False
) -> httpx.Response:
    body: dict[str, Any] = {"curp": doc["curp"]}
    if not registered:
        body["person"] = doc
    return await c.post(f"{E}/enrollments", json=body, headers=drive.operator)


async def capture(c: httpx.AsyncClient, drive: Drive, folio: str, seed: int) -> dict[str, Any]:
    h = drive.operator
    photo = await c.put(
        f"{E}/enrollments/{folio}/photo",
        content=synthetic_face(seed),
        headers={**h, "content-type": "image/jpeg"},
    )
    assert photo.status_code == 200, photo.text
    for finger in (2, 7):
        print_ = await c.put(
            f"{E}/enrollments/{folio}/fingerprints/{finger}",
            content=synthetic_fingerprint(seed * 10 + finger),
            headers={**h, "content-type": "image/png"},
        )
        assert print_.status_code == 200, print_.text
    result: dict[str, Any] = print_.json()
    return result


async def enroll_adult(
    c: httpx.AsyncClient, drive: Drive, seed: int = 1, doc: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A new adult through the whole visit (a given registration document, or a new one)."""
    return await enroll(c, drive, seed, doc or person_doc(), adult_documents())


async def enroll(
    c: httpx.AsyncClient, drive: Drive, seed: int, doc: dict[str, Any], documents: dict[str, Any]
) -> dict[str, Any]:
    """A person through the whole visit with these documents; the receipt."""
    started = await start(c, drive, doc)
    assert started.status_code == 201, started.text
    folio = started.json()["folio"]
    docs = await c.put(f"{E}/enrollments/{folio}/documents", json=documents, headers=drive.operator)
    assert docs.status_code == 200, docs.text
    await capture(c, drive, folio, seed)
    done = await c.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert done.status_code == 200, done.text
    receipt: dict[str, Any] = done.json()
    return receipt


async def test_an_adult_is_enrolled_and_the_digital_card_works_at_once(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    doc = person_doc()
    day = today_mx()
    # A same-day booking (the module works today unless it is Sunday).
    booked = await anonymous.post(
        f"{E}/appointments",
        json={"curp": doc["curp"], "module_code": MODULE, "day": day.isoformat()},
    )
    started = await start(anonymous, drive, doc)
    assert started.status_code == 201, started.text
    enrollment = started.json()
    assert enrollment["status"] == "open"
    assert {m["item"] for m in enrollment["missing"]} == {
        "photo_id",
        "curp",
        "address_proof",
        "photo",
        "fingerprints",
    }
    folio = enrollment["folio"]
    refused = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert refused.status_code == 409
    assert {e["field"] for e in refused.json()["errors"]} >= {"photo", "fingerprints"}
    await anonymous.put(
        f"{E}/enrollments/{folio}/documents", json=adult_documents(), headers=drive.operator
    )
    state = await capture(anonymous, drive, folio, 3)
    assert state["missing"] == []
    assert state["fingers"] == [2, 7]
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert done.status_code == 200, done.text
    receipt = done.json()
    visit = date.fromisoformat(state["visit_day"])
    assert date.fromisoformat(receipt["pickup_from"]) == visit + timedelta(days=28)
    assert date.fromisoformat(receipt["pickup_to"]) == visit + timedelta(days=42)
    assert receipt["module_name"].startswith("Módulo")
    # The credential exists, its digital card is active, and the citizen can open it now.
    cards = await anonymous.get(
        f"/api/v1/persons/{doc['curp']}/credentials", headers=drive.operator
    )
    assert cards.status_code == 200, cards.text
    [card] = cards.json()
    assert (card["credential_id"], card["status"], card["digital_active"]) == (
        receipt["credential_id"],
        "issued",
        True,
    )
    digital = await anonymous.get(
        "/api/v1/me/digital-card", headers=token_for(Role.CITIZEN, curp=doc["curp"])
    )
    assert digital.status_code == 200, digital.text
    assert digital.json()["qr"]
    # Enrolled once: a second enrollment of the same CURP is refused.
    again = await start(anonymous, drive, doc, registered=True)
    assert again.status_code == 409
    assert "ya fue credencializada" in again.json()["detail"]
    if booked.status_code == 201:  # not a Sunday: the appointment was kept
        async with sessions() as s:
            kept = await s.scalar(select(Appointment.status))
        assert kept == "kept"
    # Fingerprints are sealed at rest: the stored bytes are not the PNG.
    async with sessions() as s:
        stored = (await s.execute(select(Fingerprint.image_sealed))).scalars().all()
    assert len(stored) == 2
    assert all(b"\x89PNG" not in blob and b"IHDR" not in blob for blob in stored)


async def test_stale_address_proof_blocks_until_a_supervisor_excuses_it(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str
) -> None:
    doc = person_doc()
    folio = (await start(anonymous, drive, doc)).json()["folio"]
    stale = adult_documents(address_on=today_mx() - timedelta(days=250))
    state = (
        await anonymous.put(
            f"{E}/enrollments/{folio}/documents", json=stale, headers=drive.operator
        )
    ).json()
    [address] = [m for m in state["missing"] if m["item"] == "address_proof"]
    assert "más de 6 meses" in address["reason"]
    await capture(anonymous, drive, folio, 5)
    blocked = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert blocked.status_code == 409
    assert "más de 6 meses" in blocked.json()["detail"]
    # The operator cannot approve an exception; the supervisor can, with a reason.
    body = {"waive": ["address_proof"], "reason": "vive en albergue tras la inundación"}
    operator_try = await anonymous.post(
        f"{E}/enrollments/{folio}/exception", json=body, headers=drive.operator
    )
    assert operator_try.status_code == 403
    short = await anonymous.post(
        f"{E}/enrollments/{folio}/exception",
        json={"waive": ["address_proof"], "reason": "no"},
        headers=drive.supervisor,
    )
    assert short.status_code == 422
    approved = await anonymous.post(
        f"{E}/enrollments/{folio}/exception", json=body, headers=drive.supervisor
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["exception_by"] == "supervisor.prueba"
    assert approved.json()["missing"] == []
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert done.status_code == 200, done.text


async def test_a_minor_needs_a_guardian_who_is_an_adult(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str
) -> None:
    child = person_doc(birth_date=(today_mx() - timedelta(days=365 * 9)).isoformat())
    folio = (await start(anonymous, drive, child)).json()["folio"]
    minor_docs = {
        "documents": [{"kind": "birth_certificate"}, {"kind": "curp"}, {"kind": "guardian_id"}]
    }
    state = (
        await anonymous.put(
            f"{E}/enrollments/{folio}/documents", json=minor_docs, headers=drive.operator
        )
    ).json()
    assert state["minor"] is True
    assert [m["item"] for m in state["missing"]] == ["guardian", "photo", "fingerprints"]
    teen = person_doc(birth_date=(today_mx() - timedelta(days=365 * 15)).isoformat())["curp"]
    refused = await anonymous.put(
        f"{E}/enrollments/{folio}/documents",
        json={**minor_docs, "guardian_curp": teen, "guardian_relationship": "guardian"},
        headers=drive.operator,
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "guardian_curp"
    mother = person_doc(sex="M")["curp"]
    linked = await anonymous.put(
        f"{E}/enrollments/{folio}/documents",
        json={**minor_docs, "guardian_curp": mother, "guardian_relationship": "mother"},
        headers=drive.operator,
    )
    assert linked.json()["guardian_curp"] == mother
    await capture(anonymous, drive, folio, 7)
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert done.status_code == 200, done.text


async def test_a_probable_duplicate_waits_for_the_supervisor(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str, token_for: TokenFor
) -> None:
    first = person_doc(
        given_names="JUANA",
        first_surname="PÉREZ",
        second_surname="LÓPEZ",
        birth_date="1980-01-02",
        sex="M",
    )
    assert (
        await anonymous.post("/api/v1/persons", json=first, headers=drive.supervisor)
    ).status_code == 201
    # Same names, birth date and state; another homonym differentiator: another CURP.
    other = str((int(first["curp"][16]) + 1) % 10)
    twin_curp = curp_rules.generate("JUANA", "PÉREZ", "LÓPEZ", date(1980, 1, 2), "M", "HG", other)
    assert twin_curp != first["curp"]
    twin = {**first, "curp": twin_curp}
    # Another second surname is another person's name: no review (it crowded the queue).
    cousin_curp = curp_rules.generate("JUANA", "PÉREZ", "GARCÍA", date(1980, 1, 2), "M", "HG")
    cousin = {**first, "curp": cousin_curp, "second_surname": "GARCÍA"}
    apart = await start(anonymous, drive, cousin)
    assert apart.status_code == 201, apart.text
    assert apart.json()["status"] == "open"
    # The same names written without accents and in lower case are the same names.
    started = await start(anonymous, drive, {**twin, "first_surname": "Perez"})
    assert started.status_code == 201, started.text
    assert started.json()["status"] == "review"
    folio = started.json()["folio"]
    await anonymous.put(
        f"{E}/enrollments/{folio}/documents", json=adult_documents(), headers=drive.operator
    )
    await capture(anonymous, drive, folio, 9)
    blocked = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert blocked.status_code == 409
    assert "duplicate_review" in {e["field"] for e in blocked.json()["errors"]}
    queue = await anonymous.get(f"{E}/reviews", headers=drive.supervisor)
    [review] = queue.json()
    stranger = token_for(Role.SUPERVISOR, username="supervisora.ajena")
    unbound = await anonymous.get(f"{E}/reviews", headers=stranger)
    assert unbound.status_code == 403  # a supervisor of no module sees no one's reviews
    assert (review["person_curp"], review["candidate_curp"]) == (twin_curp, first["curp"])
    assert (await anonymous.get(f"{E}/reviews", headers=drive.operator)).status_code == 403
    decided = await anonymous.post(
        f"{E}/reviews/{review['id']}", json={"decision": "distinct"}, headers=drive.supervisor
    )
    assert decided.status_code == 200, decided.text
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert done.status_code == 200, done.text


async def test_curp_and_images_are_checked(anonymous: httpx.AsyncClient, drive: Drive) -> None:
    doc = person_doc(
        given_names="PEDRO",
        first_surname="LÓPEZ",
        second_surname="OCHOA",
        birth_date="1980-01-02",
        sex="H",
    )
    # A CURP of the same birth data but another name: only the name letters disagree.
    other = curp_rules.generate("JUANA", "PÉREZ", "LÓPEZ", date(1980, 1, 2), "H", "HG", "3")
    wrong = await anonymous.post(
        f"{E}/enrollments",
        headers=drive.operator,
        json={"curp": other, "person": {**doc, "curp": other}},
    )
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["errors"][0]["field"] == "person.curp"
    assert "no corresponde al nombre" in wrong.json()["errors"][0]["reason"]
    unregistered = await anonymous.post(
        f"{E}/enrollments", headers=drive.operator, json={"curp": doc["curp"]}
    )
    assert unregistered.status_code == 422
    assert unregistered.json()["errors"][0]["field"] == "person"
    folio = (await start(anonymous, drive, doc)).json()["folio"]
    blank = await anonymous.put(
        f"{E}/enrollments/{folio}/fingerprints/2", content=b"not an image", headers=drive.operator
    )
    assert blank.status_code == 422
    assert blank.json()["errors"][0]["field"] == "fingerprints.2"
    small = await anonymous.put(
        f"{E}/enrollments/{folio}/photo",
        content=synthetic_face(1, (100, 120)),
        headers=drive.operator,
    )
    assert small.status_code == 422
    assert small.json()["errors"][0]["field"] == "photo"
    huge = await anonymous.put(f"{E}/enrollments/{folio}/fingerprints/7",
                               content=b"\0" * 2_100_000, headers=drive.operator)  # fmt: skip
    assert huge.status_code == 422
    assert huge.json()["errors"][0] == {"field": "fingerprints.7",
                                        "reason": "la imagen pesa más de 2 MB"}  # fmt: skip


async def test_staff_act_only_at_their_module(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor, settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    doc = person_doc()
    folio = (await start(anonymous, drive, doc)).json()["folio"]
    elsewhere = await open_module(anonymous, token_for, code="MR-13-0009")
    foreign = await anonymous.get(f"{E}/enrollments/{folio}", headers=elsewhere.operator)
    assert foreign.status_code == 403
    async with sessions() as s:  # the refusal is in the audit log
        denied = await s.scalar(
            select(AuditEvent.outcome).where(AuditEvent.action == "enrollment:module:access")
        )
    assert denied == "denied"
    # A supervisor cannot take an operator who works at another module.
    async with sessions() as s, s.begin():
        await create_account(s, AccountCreate(
            username="operador.otro", display_name="Otro", role=Role.REGISTRATION_OPERATOR,
            password="Prueba-Segura-2026", module_code="MR-13-0009", totp=True,
        ), keyring_of(settings))  # fmt: skip
    taken = await anonymous.post(f"{E}/modules/{MODULE}/staff", headers=drive.supervisor,
                                 json={"username": "operador.otro"})  # fmt: skip
    assert taken.status_code == 409, taken.text
    assert "MR-13-0009" in taken.json()["detail"]
    unassigned = token_for(Role.REGISTRATION_OPERATOR)
    refused = await anonymous.post(
        f"{E}/enrollments", headers=unassigned, json={"curp": person_doc()["curp"]}
    )
    assert refused.status_code == 403
    assert "no está asignada" in refused.json()["detail"]
    mine = await anonymous.get(f"{E}/enrollments/{folio}", headers=drive.operator)
    assert mine.status_code == 200
    assert mine.json()["full_name"].startswith(doc["given_names"])


class _AlwaysMatches:
    """A matcher that finds every person's prints under one other CURP (a test double of
    the pluggable interface, standing for a real 1:N search that finds a hit)."""

    name = "coincide siempre (prueba)"

    def __init__(self, other: str) -> None:
        self.other = other

    def candidates(self, curp: str, prints: dict[int, bytes]) -> list[str]:
        return [self.other]


async def test_a_biometric_match_goes_to_review_and_stays_there(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str, settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    doc = person_doc()
    folio = (await start(anonymous, drive, doc)).json()["folio"]
    await anonymous.put(f"{E}/enrollments/{folio}/documents", json=adult_documents(),
                        headers=drive.operator)  # fmt: skip
    await capture(anonymous, drive, folio, 71)
    ring = keyring_of(settings)
    who = Principal("t", "operador.prueba", Role.REGISTRATION_OPERATOR, 10, module_code=MODULE)

    async def completed() -> object:
        """The completion as the desk calls it, with a matcher that always finds one CURP."""
        audit = AuditLog(sessions, settings.audit_key.get_secret_value().encode())
        await audit.start()
        try:
            async with sessions() as s, s.begin():
                issuance = Issuance(Signer(sessions, ring), ring, config_of(settings))
                return await complete(
                    s, issuance, _AlwaysMatches("XEXX010101HNEXXXA4"), folio, Caller(who, audit)
                )
        finally:
            await audit.close()

    held = await completed()
    assert isinstance(held, EnrollmentRead)
    assert held.status.value == "review"
    # Committed: the review is in the supervisors' queue and completion waits for it.
    queue = (await anonymous.get(f"{E}/reviews", headers=drive.supervisor)).json()
    assert [(r["person_curp"], r["candidate_curp"]) for r in queue] == [
        (doc["curp"], "XEXX010101HNEXXXA4")
    ]
    assert "coincidencia biométrica" in queue[0]["reason"]
    blocked = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=drive.operator)
    assert blocked.status_code == 409
    # The supervisor judges them two people: the same match is not asked again, and the
    # enrollment completes (it went back to review at every completion).
    decided = await anonymous.post(
        f"{E}/reviews/{queue[0]['id']}", headers=drive.supervisor,
        json={"decision": "distinct", "note": "huellas distintas al compararlas"},
    )  # fmt: skip
    assert decided.status_code == 200, decided.text
    done = await completed()
    assert not isinstance(done, EnrollmentRead), done


async def test_an_appointment_cancelled_as_the_visit_starts_stays_cancelled(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The citizen cancels the same-day appointment just as the operator starts the visit
    (after the start read it as booked): the start counts a walk-in, the appointment stays
    cancelled and its freed place is not counted as kept."""
    from salud.enrollment import repository as enrollment_repository

    doc = person_doc()
    registrar = token_for(Role.REGISTRATION_OPERATOR, username="registro.prueba")
    assert (await anonymous.post("/api/v1/persons", json=doc, headers=registrar)).is_success
    booked = await anonymous.post(
        f"{E}/appointments",
        json={"curp": doc["curp"], "module_code": MODULE, "day": today_mx().isoformat()},
    )
    read_booking = enrollment_repository.booked_for

    async def booked_then_cancelled(session: AsyncSession, curp: str) -> Appointment | None:
        found = await read_booking(session, curp)
        cancel = await anonymous.post(
            f"{E}/appointments/{booked.json()['folio']}/cancel", json={"curp": curp}
        )
        assert cancel.json()["status"] == "cancelled"
        return found

    if booked.status_code == 201:  # not a Sunday (the module is closed then)
        monkeypatch.setattr(enrollment_repository, "booked_for", booked_then_cancelled)
    started = await start(anonymous, drive, doc, registered=True)
    assert started.status_code == 201, started.text
    async with sessions() as s:
        statuses = (await s.execute(select(Appointment.status))).scalars().all()
    assert statuses == (["cancelled"] if booked.status_code == 201 else [])


async def test_enrolling_releases_a_booking_for_another_day(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A person booked for a later day comes in today as a walk-in: once enrolled, the later
    booking is cancelled and its place goes back to the others (audited)."""
    doc = person_doc()
    day = drive.next_open_day()
    booked = await anonymous.post(
        f"{E}/appointments",
        json={"curp": doc["curp"], "module_code": MODULE, "day": day.isoformat()},
    )
    assert booked.status_code == 201, booked.text

    async def places() -> int:
        found = await anonymous.get(
            f"{E}/modules/{MODULE}/availability", params={"curp": person_doc()["curp"]}
        )
        return next(d["booked"] for d in found.json()["days"] if d["day"] == day.isoformat())

    assert await places() == 1
    await enroll_adult(anonymous, drive, doc=doc)
    assert await places() == 0
    async with sessions() as s:
        assert (await s.execute(select(Appointment.status))).scalars().all() == ["cancelled"]
        entry = (
            await s.execute(
                select(AuditEvent).where(AuditEvent.action == "enrollment:appointment:cancel")
            )
        ).scalar_one()
    assert entry.subject_id == booked.json()["folio"]


async def test_an_enrollment_left_open_locks_no_one_out(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """A person who leaves to fetch a document: resumed on a later day, the visit is that
    day (a proof dated after the first day counts); never resumed, it does not keep them from
    enrolling at another module; and an operator cancels one typed by mistake."""
    yesterday = today_mx() - timedelta(days=1)

    async def left_open_since(folio: str, day: date) -> None:
        async with sessions() as s, s.begin():
            await s.execute(update(Enrollment).where(Enrollment.folio == folio)
                            .values(visit_day=day))  # fmt: skip

    doc = person_doc()
    folio = (await start(anonymous, drive, doc)).json()["folio"]
    await left_open_since(folio, yesterday)
    fresh = adult_documents(address_on=today_mx())  # dated after the first day
    resumed = await anonymous.put(f"{E}/enrollments/{folio}/documents", json=fresh,
                                  headers=drive.operator)  # fmt: skip
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["visit_day"] == today_mx().isoformat()
    assert not [m for m in resumed.json()["missing"] if m["item"] == "address_proof"]

    other = person_doc()
    first = (await start(anonymous, drive, other)).json()["folio"]
    await left_open_since(first, yesterday)
    elsewhere = await open_module(anonymous, token_for, code="MR-13-0009")
    again = await anonymous.post(f"{E}/enrollments", json={"curp": other["curp"]},
                                 headers=elsewhere.operator)  # fmt: skip
    assert again.status_code == 201, again.text
    old = await anonymous.get(f"{E}/enrollments/{first}", headers=drive.operator)
    assert old.json()["status"] == "cancelled"

    mistyped = person_doc()
    folio = (await start(anonymous, drive, mistyped)).json()["folio"]
    url = f"{E}/enrollments/{folio}/cancel"
    reason = {"reason": "CURP capturada por error"}
    assert (await anonymous.post(url, json=reason, headers=elsewhere.operator)).status_code == 403
    assert (
        await anonymous.post(url, json={"reason": "no"}, headers=drive.operator)
    ).status_code == 422
    done = await anonymous.post(url, json=reason, headers=drive.operator)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    assert (await anonymous.post(url, json=reason, headers=drive.operator)).status_code == 409
    restart = await anonymous.post(f"{E}/enrollments", json={"curp": mistyped["curp"]},
                                   headers=elsewhere.operator)  # fmt: skip
    assert restart.status_code == 201, restart.text
    async with sessions() as s:
        cancelled = await s.scalar(select(func.count()).where(
            AuditEvent.action == "enrollment:enrollment:cancel"))  # fmt: skip
    assert cancelled == 2  # the one abandoned and the one cancelled by hand


@pytest.mark.postgresql  # SQLite has no row locks: its writers take turns on the database
async def test_a_completion_under_way_is_not_cancelled_by_a_start_elsewhere(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """The start elsewhere waits for the row a completion holds, and judges it as committed:
    completed, it is a 409, never cancelled under the credential just issued."""
    doc = person_doc()
    folio = (await start(anonymous, drive, doc)).json()["folio"]
    elsewhere = await open_module(anonymous, token_for, code="MR-13-0009")
    async with sessions() as holder:
        await holder.begin()
        await holder.execute(select(Enrollment).where(Enrollment.folio == folio).with_for_update())
        await holder.execute(update(Enrollment).where(Enrollment.folio == folio).values(
            visit_day=today_mx() - timedelta(days=1), status="completed"))  # fmt: skip
        body = {"curp": doc["curp"]}
        second = asyncio.create_task(
            anonymous.post(f"{E}/enrollments", json=body, headers=elsewhere.operator)
        )
        await asyncio.sleep(0.5)
        assert not second.done()  # waiting for the row
        await holder.commit()
    answer = await second
    assert answer.status_code == 409, answer.text
    assert "credencializada" in answer.json()["detail"]
    kept = await anonymous.get(f"{E}/enrollments/{folio}", headers=drive.operator)
    assert kept.json()["status"] == "completed"


async def test_two_supervisors_taking_one_operator_at_once_one_is_refused(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor, settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """The account is locked while checked: both supervisors saw it free and the last write
    won, so the operator was silently moved from the module that took them first."""
    other = await open_module(anonymous, token_for, code="MR-13-0009")
    async with sessions() as s, s.begin():
        await create_account(s, AccountCreate(
            username="operador.libre", display_name="Libre", role=Role.REGISTRATION_OPERATOR,
            password="Prueba-Segura-2026", totp=True,
        ), keyring_of(settings))  # fmt: skip
    body = {"username": "operador.libre"}
    answers = await asyncio.gather(
        anonymous.post(f"{E}/modules/{MODULE}/staff", headers=drive.supervisor, json=body),
        anonymous.post(f"{E}/modules/MR-13-0009/staff", headers=other.supervisor, json=body),
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]


async def test_a_duplicate_decided_closes_the_enrollments_other_reviews(
    anonymous: httpx.AsyncClient, drive: Drive
) -> None:
    """Two homonyms: two reviews. One decided `duplicate` cancels the enrollment; the other
    stayed in the supervisors' queue, pending for an enrollment that no longer was."""
    same = dict(given_names="PEDRO", first_surname="RAMOS", second_surname="LUNA",
                birth_date="1981-03-04", sex="H")  # fmt: skip
    for _ in range(2):
        made = await anonymous.post(
            "/api/v1/persons", json=person_doc(**same), headers=drive.supervisor
        )
        assert made.status_code == 201, made.text
    started = await start(anonymous, drive, person_doc(**same))
    queue = (await anonymous.get(f"{E}/reviews", headers=drive.supervisor)).json()
    assert len(queue) == 2
    decided = await anonymous.post(
        f"{E}/reviews/{queue[0]['id']}", json={"decision": "duplicate"}, headers=drive.supervisor
    )
    assert decided.status_code == 200, decided.text
    assert (await anonymous.get(f"{E}/reviews", headers=drive.supervisor)).json() == []
    moot = await anonymous.post(
        f"{E}/reviews/{queue[1]['id']}", json={"decision": "distinct"}, headers=drive.supervisor
    )
    assert moot.status_code == 409
    folio = started.json()["folio"]
    enrollment = await anonymous.get(f"{E}/enrollments/{folio}", headers=drive.operator)
    assert enrollment.json()["status"] == "cancelled"


async def test_only_what_this_visit_captured_completes_it(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    """A photo and prints captured at an abandoned visit elsewhere, or a photo uploaded
    through the registry, counted for a new enrollment: completed with nothing captured at
    this module, the card would show a photo this module never saw."""
    doc = person_doc()
    first = (await start(anonymous, drive, doc)).json()["folio"]
    await capture(anonymous, drive, first, 31)
    cancelled = await anonymous.post(
        f"{E}/enrollments/{first}/cancel", json={"reason": "la persona se retiró"},
        headers=drive.operator,
    )  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    other = await open_module(anonymous, token_for, code="MR-13-0009")
    again = await anonymous.post(
        f"{E}/enrollments", json={"curp": doc["curp"]}, headers=other.operator
    )
    assert again.status_code == 201, again.text
    missing = {m["item"] for m in again.json()["missing"]}
    assert {"photo", "fingerprints"} <= missing
    # A photo put through the registry's API before a visit does not count either.
    late = person_doc()
    assert (await anonymous.post("/api/v1/persons", json=late, headers=drive.supervisor)).is_success
    uploaded = await anonymous.put(
        f"/api/v1/persons/{late['curp']}/photo", content=synthetic_face(4),
        headers={**drive.supervisor, "Content-Type": "image/jpeg"},
    )  # fmt: skip
    assert uploaded.status_code == 204, uploaded.text
    visit = await start(anonymous, drive, late, registered=True)
    assert "photo" in {m["item"] for m in visit.json()["missing"]}
