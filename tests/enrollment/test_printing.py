"""The print queue: a batch per module, its print file, shipping, reception (people are told),
delivery after an identity check, overdue batches, and a lost card's reissue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pypdfium2
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.credentials.models import Credential, CredentialEvent
from salud.enrollment.models import Notification, PrintBatch
from salud.kit.clock import today_mx
from salud.web.pages import SESSION
from tests.conftest import TokenFor
from tests.enrollment.conftest import MODULE, Drive, E
from tests.enrollment.test_enrollment import capture, enroll, enroll_adult, start
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


async def test_a_batch_goes_from_print_to_the_persons_hands(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    receipts = [await enroll_adult(anonymous, drive, seed) for seed in (11, 12, 13)]
    op = drive.operator
    made = await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    assert made.status_code == 201, made.text
    batch = made.json()
    assert batch["card_count"] == 3
    assert {c["credential_id"] for c in batch["cards"]} == {r["credential_id"] for r in receipts}
    code = batch["code"]
    empty = await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    assert empty.status_code == 409  # every card is in a batch already
    early = await anonymous.post(
        f"{E}/cards/{receipts[0]['credential_id']}/delivery",
        json={"identity_check": "photo_id"},
        headers=op,
    )
    assert early.status_code == 409
    pdf = await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert len(pypdfium2.PdfDocument(pdf.content)) == 6  # front and back of each card
    again = await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)
    assert again.status_code == 409
    wrong_order = await anonymous.post(
        f"{E}/print-batches/{code}/status", json={"status": "received"}, headers=op
    )
    assert wrong_order.status_code == 409
    for step in ("shipped", "received"):
        moved = await anonymous.post(
            f"{E}/print-batches/{code}/status", json={"status": step}, headers=op
        )
        assert moved.status_code == 200, moved.text
    state = moved.json()
    assert {c["card_status"] for c in state["cards"]} == {"ready_for_pickup"}
    async with sessions() as s:
        told = (await s.execute(select(Notification.person_curp, Notification.kind))).all()
    assert sorted(told) == sorted((r["curp"], "card_ready") for r in receipts)
    handed = await anonymous.post(
        f"{E}/cards/{receipts[0]['credential_id']}/delivery",
        json={"identity_check": "photo_id"},
        headers=op,
    )
    assert handed.status_code == 200, handed.text
    assert handed.json()["card_status"] == "delivered"
    twice = await anonymous.post(
        f"{E}/cards/{receipts[0]['credential_id']}/delivery",
        json={"identity_check": "photo_id"},
        headers=op,
    )
    assert twice.status_code == 409


async def test_overdue_batches_are_listed(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await enroll_adult(anonymous, drive, 21)
    op = drive.operator
    code = (
        await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    ).json()["code"]
    listed = await anonymous.get(f"{E}/print-batches", params={"overdue": "true"}, headers=op)
    assert listed.json() == []
    async with sessions() as s, s.begin():
        await s.execute(update(PrintBatch).values(due_on=today_mx() - timedelta(days=1)))
    listed = await anonymous.get(f"{E}/print-batches", params={"overdue": "true"}, headers=op)
    assert [(b["code"], b["overdue"]) for b in listed.json()] == [(code, True)]


async def test_a_lost_card_is_reissued_and_goes_to_the_next_batch(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str
) -> None:
    receipt = await enroll_adult(anonymous, drive, 31)
    other = await enroll_adult(anonymous, drive, 32)
    op = drive.operator
    first = await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    reissued = await anonymous.post(
        f"/api/v1/persons/{receipt['curp']}/credentials", json={"reason": "lost"}, headers=op
    )
    assert reissued.status_code == 201, reissued.text
    new_id = reissued.json()["credential_id"]
    cards = (
        await anonymous.get(f"/api/v1/persons/{receipt['curp']}/credentials", headers=op)
    ).json()
    states = {c["credential_id"]: c["status"] for c in cards}
    assert states == {receipt["credential_id"]: "superseded", new_id: "issued"}
    batch = await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    assert [c["credential_id"] for c in batch.json()["cards"]] == [new_id]
    # The first batch still prints, without the card that was lost meanwhile.
    pdf = await anonymous.post(f"{E}/print-batches/{first.json()['code']}/print-file", headers=op)
    assert pdf.status_code == 200, pdf.text
    assert len(pypdfium2.PdfDocument(pdf.content)) == 2
    cards = (await anonymous.get(f"/api/v1/persons/{other['curp']}/credentials", headers=op)).json()
    assert [c["status"] for c in cards] == ["printed"]


async def test_a_batch_is_for_its_module_staff_only(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str, token_for: TokenFor
) -> None:
    await enroll_adult(anonymous, drive, 61)
    made = await anonymous.post(
        f"{E}/print-batches", json={"module_code": MODULE}, headers=drive.operator
    )
    code = made.json()["code"]
    elsewhere = token_for(Role.REGISTRATION_OPERATOR, username="otro", module="MR-09-0001")
    nowhere = token_for(Role.REGISTRATION_OPERATOR, username="nadie")
    for headers in (elsewhere, nowhere):
        assert (
            await anonymous.get(f"{E}/print-batches/{code}", headers=headers)
        ).status_code == 403
        printed = await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=headers)
        assert printed.status_code == 403
        listed = await anonymous.get(f"{E}/print-batches", headers=headers)
        assert listed.status_code in (403, 404)
        assert code not in listed.text


async def test_a_reissue_needs_a_card_to_replace(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str
) -> None:
    """A 'lost card' for someone who never had one would be a first card that skipped the
    enrollment: refused, whoever asks."""
    doc = person_doc()
    assert (await anonymous.post("/api/v1/persons", json=doc,
                                 headers=drive.supervisor)).status_code == 201  # fmt: skip
    refused = await anonymous.post(f"/api/v1/persons/{doc['curp']}/credentials",
                                   json={"reason": "lost"}, headers=drive.operator)  # fmt: skip
    assert refused.status_code == 409
    assert "no hay una credencial vigente" in refused.json()["detail"]


async def test_a_card_suspended_before_printing_leaves_the_batch_and_can_return(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str
) -> None:
    kept = await enroll_adult(anonymous, drive, 81)
    paused = await enroll_adult(anonymous, drive, 82)
    op = drive.operator
    code = (
        await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    ).json()["code"]
    card = f"/api/v1/credentials/{paused['credential_id']}/status"
    suspended = await anonymous.post(card, json={"status": "suspended"}, headers=drive.supervisor)
    assert suspended.status_code == 200, suspended.text
    pdf = await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)
    assert len(pypdfium2.PdfDocument(pdf.content)) == 2  # only the card still in force
    batch = (await anonymous.get(f"{E}/print-batches/{code}", headers=op)).json()
    assert batch["card_count"] == 1
    assert [c["credential_id"] for c in batch["cards"]] == [kept["credential_id"]]
    again = await anonymous.post(card, json={"status": "active"}, headers=drive.supervisor)
    assert again.json()["status"] == "issued"
    later = await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    assert [c["credential_id"] for c in later.json()["cards"]] == [paused["credential_id"]]


async def printed_and_received(c: httpx.AsyncClient, op: dict[str, str]) -> str:
    """A batch of the module's issued cards, printed, shipped and received: its code."""
    made = await c.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    code: str = made.json()["code"]
    assert (await c.post(f"{E}/print-batches/{code}/print-file", headers=op)).is_success
    for step in ("shipped", "received"):
        moved = await c.post(f"{E}/print-batches/{code}/status", json={"status": step}, headers=op)
        assert moved.status_code == 200, moved.text
    return code


async def _enroll_minor(
    c: httpx.AsyncClient, drive: Drive, seed: int, guardian: str
) -> dict[str, Any]:
    child = person_doc(birth_date=(today_mx() - timedelta(days=365 * 9)).isoformat())
    docs = {
        "documents": [{"kind": "birth_certificate"}, {"kind": "curp"}, {"kind": "guardian_id"}],
        "guardian_curp": guardian, "guardian_relationship": "mother",
    }  # fmt: skip
    return await enroll(c, drive, seed, child, docs)


async def test_a_minors_card_goes_only_to_the_guardian_linked_in_the_registry(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Issue 6: the guardian is linked to the minor. Completing a minor's enrollment links
    the adult whose ID was checked in the registry; the plastic is handed only to that adult
    (checked with their ID, their CURP recorded); an adult takes their own card."""
    op = drive.operator
    mother = person_doc(sex="M", birth_date="1990-03-04")["curp"]
    stranger = person_doc(birth_date="1985-07-08")["curp"]
    minor = await _enroll_minor(anonymous, drive, 41, mother)
    adult = await enroll_adult(anonymous, drive, 42)
    links = await anonymous.get(f"/api/v1/persons/{minor['curp']}/guardians", headers=op)
    assert links.status_code == 200, links.text
    [link] = links.json()
    assert (link["guardian_curp"], link["relationship"], link["active"]) == (mother, "mother", True)
    assert link["source"] == f"registro {minor['folio']}"

    await printed_and_received(anonymous, op)

    async def hand(card: dict[str, Any], **body: str) -> httpx.Response:
        url = f"{E}/cards/{card['credential_id']}/delivery"
        return await anonymous.post(url, json=body, headers=op)

    for body, field in (
        ({"identity_check": "photo_id"}, "identity_check"),  # the child's own ID: no
        ({"identity_check": "guardian_id"}, "receiver_curp"),  # who takes it?
        ({"identity_check": "guardian_id", "receiver_curp": stranger}, "receiver_curp"),
    ):
        refused = await hand(minor, **body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["errors"][0]["field"] == field
    handed = await hand(minor, identity_check="guardian_id", receiver_curp=mother)
    assert handed.status_code == 200, handed.text
    assert (handed.json()["card_status"], handed.json()["delivered_to"]) == ("delivered", mother)

    for body in ({"identity_check": "guardian_id"},
                 {"identity_check": "photo_id", "receiver_curp": mother}):  # fmt: skip
        refused = await hand(adult, **body)
        assert refused.status_code == 422, (body, refused.text)
    handed = await hand(adult, identity_check="photo_id")
    assert handed.json()["delivered_to"] == adult["curp"]

    # A supervisor links another adult after checking documents, never a minor, and ends a
    # link with the reason: the row stays, no longer in force. An operator links only by
    # completing the minor's enrollment at their module.
    sup = drive.supervisor
    teen = person_doc(birth_date=(today_mx() - timedelta(days=365 * 16)).isoformat())["curp"]
    url = f"/api/v1/persons/{minor['curp']}/guardians"
    body = {"guardian_curp": teen, "relationship": "guardian", "reason": "resolución judicial"}
    assert (await anonymous.post(url, json=body, headers=op)).status_code == 403
    young = await anonymous.post(url, json=body, headers=sup)
    assert young.status_code == 422
    assert young.json()["errors"][0]["field"] == "guardian_curp"
    body = {"guardian_curp": stranger, "relationship": "father", "reason": "acta de nacimiento"}
    added = await anonymous.post(url, json=body, headers=sup)
    assert added.status_code == 201, added.text
    assert [x["guardian_curp"] for x in added.json()] == [mother, stranger]
    for_adult = await anonymous.post(
        f"/api/v1/persons/{adult['curp']}/guardians",
        json={"guardian_curp": mother, "relationship": "mother", "reason": "acta"}, headers=sup,
    )  # fmt: skip
    assert for_adult.status_code == 422
    # Ending one is a supervisor's; an institution's system can neither link nor end (a link
    # hands over the minor's card), whatever its scopes.
    end = {"reason": "vinculado por error"}
    assert (await anonymous.post(f"{url}/{stranger}/end", json=end, headers=op)).status_code == 403
    system = token_for(Role.CLIENT, scopes="system/*.write system/*.read")
    body = {"guardian_curp": teen, "relationship": "mother", "reason": "acta de nacimiento"}
    assert (await anonymous.post(url, json=body, headers=system)).status_code == 403
    assert (
        await anonymous.post(f"{url}/{mother}/end", json=end, headers=system)
    ).status_code == 403
    ended = await anonymous.post(f"{url}/{stranger}/end", json=end, headers=sup)
    assert ended.status_code == 200, ended.text
    assert (ended.json()["active"], ended.json()["ended_by"]) == (False, "supervisor.prueba")
    again = await anonymous.post(f"{url}/{stranger}/end", json=end, headers=sup)
    assert again.status_code == 404
    history = (await anonymous.get(url, headers=op)).json()
    assert [(x["guardian_curp"], x["active"]) for x in history] == [
        (mother, True),
        (stranger, False),
    ]

    # Who may read it: whoever may read the registry's entry (reception too: a parent brings
    # the child); not a system administrator, nor another citizen.
    for role in (Role.SYSTEM_ADMIN, Role.CITIZEN):
        denied = await anonymous.get(url, headers=token_for(role, curp=mother))
        assert denied.status_code == 403, role
    auditor = token_for(Role.AUDITOR)
    log = (await anonymous.get(f"/api/v1/persons/{minor['curp']}/accesses",
                               headers=auditor)).json()["items"]  # fmt: skip
    actions = {(e["action"], e["outcome"]) for e in log}
    assert {("identity:guardian:link", "success"), ("identity:guardian:end", "success"),
            ("identity:guardian:list", "success")} <= actions  # fmt: skip
    # The refused hand-overs are there too, with the CURP that was offered.
    refusals = [e for e in log if e["action"] == "enrollment:card:deliver"
                and e["outcome"] == "denied"]  # fmt: skip
    assert len(refusals) == 3
    async with sessions() as s:
        details = (await s.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "enrollment:card:deliver", AuditEvent.outcome == "denied",
            AuditEvent.person_curp == minor["curp"]))).scalars().all()  # fmt: skip
    offered = {(d or {}).get("receiver") for d in details}
    assert offered == {None, stranger}


async def test_a_card_suspended_while_its_batch_travels_is_handed_over_once_reactivated(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Suspended in transit, the card is skipped at the reception; reactivated, its batch
    being at the module, it is ready for pickup at once and its holder is told (it went back
    to `printed`: no notice, and the dashboard counted it as still on its way); delivery
    takes it, and the batch page offers it."""
    receipt = await enroll_adult(anonymous, drive, 91)
    op, sup = drive.operator, drive.supervisor
    code = (await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE},
                                 headers=op)).json()["code"]  # fmt: skip
    assert (await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)).is_success
    step = f"{E}/print-batches/{code}/status"
    assert (await anonymous.post(step, json={"status": "shipped"}, headers=op)).is_success
    card = f"/api/v1/credentials/{receipt['credential_id']}/status"
    assert (await anonymous.post(card, json={"status": "suspended"}, headers=sup)).is_success
    received = await anonymous.post(step, json={"status": "received"}, headers=op)
    assert [c["card_status"] for c in received.json()["cards"]] == ["suspended"]
    async with sessions() as s:
        told = select(Notification.kind).where(Notification.person_curp == receipt["curp"])
        assert (await s.execute(told)).scalars().all() == []  # skipped while suspended
    back = await anonymous.post(card, json={"status": "active"}, headers=sup)
    assert back.json()["status"] == "ready_for_pickup", back.text
    async with sessions() as s:
        assert (await s.execute(told)).scalars().all() == ["card_ready"]

    anonymous.cookies.set(SESSION, op["Authorization"].removeprefix("Bearer "))
    page = await anonymous.get(f"/modulo/lotes/{code}")
    anonymous.cookies.clear()
    assert page.status_code == 200, page.text
    row = page.text.split(f'data-card="{receipt["credential_id"]}"')[1].split("</tr>")[0]
    assert "Entregar" in row

    handed = await anonymous.post(
        f"{E}/cards/{receipt['credential_id']}/delivery",
        json={"identity_check": "photo_id"}, headers=op,
    )  # fmt: skip
    assert handed.status_code == 200, handed.text
    assert handed.json()["card_status"] == "delivered"
    listed = await anonymous.get(f"/api/v1/persons/{receipt['curp']}/credentials", headers=op)
    assert [c["status"] for c in listed.json()] == ["delivered"]
    async with sessions() as s:
        events = (await s.execute(
            select(CredentialEvent.status).join(Credential)
            .where(Credential.credential_id == receipt["credential_id"])
            .order_by(CredentialEvent.id))).scalars().all()  # fmt: skip
    assert events == ["issued", "printed", "suspended", "ready_for_pickup", "delivered"]


async def test_forming_and_moving_a_batch_is_in_each_holders_accesses(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str, token_for: TokenFor
) -> None:
    """Forming a batch and each of its steps answer every card's CURP (and who took it):
    one entry per holder, as reading the batch records."""
    receipts = [await enroll_adult(anonymous, drive, seed) for seed in (93, 94)]
    op = drive.operator
    code = (await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE},
                                 headers=op)).json()["code"]  # fmt: skip
    assert (await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)).is_success
    for step in ("shipped", "received"):
        moved = await anonymous.post(
            f"{E}/print-batches/{code}/status", json={"status": step}, headers=op
        )
        assert moved.status_code == 200, moved.text
    for r in receipts:
        me = token_for(Role.CITIZEN, curp=r["curp"])
        log = await anonymous.get(
            f"/api/v1/persons/{r['curp']}/accesses", params={"limit": 200}, headers=me
        )
        assert log.status_code == 200, log.text
        seen = {(e["action"], e["actor"]) for e in log.json()["items"]}
        for action in ("create", "shipped", "received"):
            assert (f"enrollment:batch:{action}", "operador.prueba") in seen, (action, seen)


async def test_a_guardian_whose_id_was_excused_is_not_linked_to_the_minor(
    anonymous: httpx.AsyncClient,
    drive: Drive,
    signing_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A supervisor may excuse the guardian's ID, but then nobody checked who the adult is:
    the link (which hands over the minor's plastic and digital card) is not made at
    completion; a supervisor links them after checking documents."""
    op, sup = drive.operator, drive.supervisor
    mother = person_doc(sex="M", birth_date="1992-06-07")["curp"]
    child = person_doc(birth_date=(today_mx() - timedelta(days=365 * 8)).isoformat())
    folio = (await start(anonymous, drive, child)).json()["folio"]
    docs = {"documents": [{"kind": "birth_certificate"}, {"kind": "curp"}],
            "guardian_curp": mother, "guardian_relationship": "mother"}  # fmt: skip
    put = await anonymous.put(f"{E}/enrollments/{folio}/documents", json=docs, headers=op)
    assert put.status_code == 200, put.text
    body = {"waive": ["guardian_id"], "reason": "la madre perdió su identificación en el sismo"}
    excused = await anonymous.post(f"{E}/enrollments/{folio}/exception", json=body, headers=sup)
    assert excused.status_code == 200, excused.text
    await capture(anonymous, drive, folio, 95)
    done = await anonymous.post(f"{E}/enrollments/{folio}/complete", headers=op)
    assert done.status_code == 200, done.text
    links = await anonymous.get(f"/api/v1/persons/{child['curp']}/guardians", headers=op)
    assert links.status_code == 200, links.text
    assert links.json() == []
    async with sessions() as s:
        detail = await s.scalar(select(AuditEvent.detail).where(
            AuditEvent.action == "enrollment:enrollment:complete",
            AuditEvent.person_curp == child["curp"]))  # fmt: skip
    assert detail is not None
    assert detail["guardian_linked"] is False

    await printed_and_received(anonymous, op)
    refused = await anonymous.post(
        f"{E}/cards/{done.json()['credential_id']}/delivery",
        json={"identity_check": "guardian_id", "receiver_curp": mother}, headers=op,
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "receiver_curp"


async def test_a_card_suspended_after_it_was_ready_is_not_announced_twice(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """Ready at the reception (its holder told), then suspended and reactivated: ready
    again, and no second notice."""
    receipt = await enroll_adult(anonymous, drive, 92)
    sup = drive.supervisor
    await printed_and_received(anonymous, drive.operator)
    card = f"/api/v1/credentials/{receipt['credential_id']}/status"
    assert (await anonymous.post(card, json={"status": "suspended"}, headers=sup)).is_success
    back = await anonymous.post(card, json={"status": "active"}, headers=sup)
    assert back.json()["status"] == "ready_for_pickup", back.text
    async with sessions() as s:
        told = select(Notification.kind).where(Notification.person_curp == receipt["curp"])
        assert (await s.execute(told)).scalars().all() == ["card_ready"]


async def test_a_card_the_registry_changed_since_is_not_printed(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """The front is drawn from what the QR signed: a blood type corrected between the
    issuance and the print batch came out of the press on a new plastic, already wrong."""
    ok, behind = [await enroll_adult(anonymous, drive, seed) for seed in (41, 42)]
    op, sup = drive.operator, drive.supervisor
    made = await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    code = made.json()["code"]
    person = f"/api/v1/persons/{behind['curp']}"
    etag = (await anonymous.get(person, headers=sup)).headers["etag"]
    changed = await anonymous.patch(
        person, json={"blood_type": "AB-", "reason": "corrección del grupo sanguíneo"},
        headers={**sup, "If-Match": etag},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text

    refused = await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert f"la credencial {behind['credential_id']} (CURP {behind['curp']}): grupo sanguíneo" in (
        detail
    )
    assert ok["credential_id"] not in detail
    assert "actualización (update) antes de imprimir" in detail
    # Nothing moved: the batch, its cards and their states are as they were.
    state = (await anonymous.get(f"{E}/print-batches/{code}", headers=op)).json()
    assert (state["status"], state["card_count"]) == ("created", 2)
    assert {c["card_status"] for c in state["cards"]} == {"issued"}
    # The batch page tells the operator why, in the notice.
    anonymous.cookies.set(SESSION, op["Authorization"].removeprefix("Bearer "))
    page = await anonymous.get(f"/modulo/lotes/{code}")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    shown = await anonymous.post(
        f"/modulo/lotes/{code}/archivo", data={"csrf": token}, follow_redirects=True
    )
    anonymous.cookies.clear()
    assert behind["credential_id"] in shown.text, shown.text[:2000]
    assert "grupo sanguíneo" in shown.text

    # Reissued with reason update, the old card leaves the batch and the rest prints; the
    # new card goes to the next batch.
    again = await anonymous.post(f"{person}/credentials", json={"reason": "update"}, headers=sup)
    assert again.status_code == 201, again.text
    pdf = await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)
    assert pdf.status_code == 200, pdf.text
    assert len(pypdfium2.PdfDocument(pdf.content)) == 2
    following = await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE}, headers=op)
    assert [c["credential_id"] for c in following.json()["cards"]] == [
        again.json()["credential_id"]
    ]
