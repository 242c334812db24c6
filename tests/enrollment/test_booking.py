"""Appointments: the calendar decides the days, capacity holds (also under parallel requests
on a real server), cancelling frees the place and rebooking works."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.config import Settings
from salud.enrollment.booking import NOT_BOOKABLE
from salud.enrollment.models import ModuleDay
from salud.kit.clock import today_mx
from tests.conftest import TokenFor, backend
from tests.enrollment.conftest import MODULE, Drive, E, open_module
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


async def _book(
    c: httpx.AsyncClient,
    curp: str,
    day: date,
    headers: dict[str, str] | None = None,
    module: str = MODULE,
) -> httpx.Response:
    return await c.post(
        f"{E}/appointments",
        json={"curp": curp, "module_code": module, "day": day.isoformat()},
        headers=headers or {},
    )


async def _open_calendar(c: httpx.AsyncClient, token_for: TokenFor, days: int = 30) -> None:
    """Hidalgo's phase open from today and an active calendar for the next `days` days (a
    server started apart: the `drive` fixture's are in-process)."""
    admin, today = token_for(Role.INSTITUTION_ADMIN), today_mx()
    phase = {"name": "F", "starts_on": today.isoformat(), "states": ["13"]}
    assert (await c.post(f"{E}/phases", headers=admin, json=phase)).is_success
    rule = {"starts_on": today.isoformat(), "ends_on": (today + timedelta(days=days)).isoformat()}
    calendar = {"name": "t", "active": True, "rules": [rule]}
    assert (await c.post(f"{E}/calendars", headers=admin, json=calendar)).is_success


async def test_availability_booking_and_the_count_of_places(
    anonymous: httpx.AsyncClient, drive: Drive
) -> None:
    curp = person_doc()["curp"]
    found = await anonymous.get(f"{E}/modules/{MODULE}/availability", params={"curp": curp})
    assert found.status_code == 200, found.text
    days = found.json()["days"]
    assert days, "an open module in an open state has days"
    assert all(date.fromisoformat(d["day"]).isoweekday() != 7 for d in days)
    day = date.fromisoformat(days[0]["day"])
    booked = await _book(anonymous, curp, day)
    assert booked.status_code == 201, booked.text
    assert booked.json()["status"] == "booked"
    after = await anonymous.get(f"{E}/modules/{MODULE}/availability", params={"curp": curp})
    first = after.json()["days"][0]
    assert (first["booked"], first["free"]) == (1, days[0]["free"] - 1)
    again = await _book(anonymous, curp, day)
    assert again.status_code == 409
    # Without signing in, "already booked" and "already enrolled" answer alike (no oracle).
    assert again.json()["detail"] == NOT_BOOKABLE


async def test_the_calendar_and_phase_decide_the_days(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    admin = token_for(Role.INSTITUTION_ADMIN)
    start = today_mx() + timedelta(days=1)
    made = await anonymous.post(
        f"{E}/calendars",
        headers=admin,
        json={
            "name": "mayores primero",
            "active": True,
            "rules": [
                {
                    "starts_on": start.isoformat(),
                    "ends_on": (start + timedelta(days=6)).isoformat(),
                    "min_age": 60,
                },
                {
                    "starts_on": (start + timedelta(days=7)).isoformat(),
                    "ends_on": (start + timedelta(days=20)).isoformat(),
                    "letters": "A-M",
                },
            ],
        },
    )
    assert made.status_code == 201, made.text
    calendars = (await anonymous.get(f"{E}/calendars")).json()
    assert [c["name"] for c in calendars if c["active"]] == ["mayores primero"]
    young = person_doc(first_surname="PÉREZ", birth_date="1990-04-04")["curp"]  # P: not A-M
    senior = person_doc(first_surname="PÉREZ", birth_date="1950-04-04")["curp"]
    day = drive.next_open_day()
    refused = await _book(anonymous, young, day)
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["errors"][0]["field"] == "day"
    assert "calendario" in problem["errors"][0]["reason"]
    assert (await _book(anonymous, senior, day)).status_code == 201
    days = (
        await anonymous.get(
            f"{E}/modules/{MODULE}/availability", params={"curp": young, "days": 60}
        )
    ).json()["days"]
    assert days == []  # P is in no rule for the young
    # A module in a state no phase opens takes no appointments.
    other = await open_module(anonymous, token_for, code="MR-07-0001", state="07")
    senior2 = person_doc(birth_date="1951-01-01")["curp"]
    closed = await _book(anonymous, senior2, day, module=other.module)
    assert closed.status_code == 422, closed.text
    assert "estado" in closed.json()["errors"][0]["reason"]
    # A phase may open one region (municipalities) of a state: Tuxtla (07101) opens.
    region = await anonymous.post(
        f"{E}/phases", headers=admin,
        json={"name": "Región Tuxtla", "starts_on": today_mx().isoformat(),
              "municipalities": ["07101"]},
    )  # fmt: skip
    assert region.status_code == 201, region.text
    assert (await _book(anonymous, senior2, day, module=other.module)).status_code == 422
    tuxtla = await anonymous.post(
        f"{E}/modules", headers=token_for(Role.SUPERVISOR),
        json={"code": "MR-07-0101", "name": "Módulo Tuxtla", "state": "07",
              "municipality": "101", "address": "Av. Central s/n, Tuxtla Gutiérrez"},
    )  # fmt: skip
    assert tuxtla.status_code == 201, tuxtla.text
    await anonymous.post(f"{E}/modules/MR-07-0101/status", headers=admin | {
        "Authorization": token_for(Role.SUPERVISOR, module="MR-07-0101")["Authorization"]},
        json={"status": "open"})  # fmt: skip
    assert (await _book(anonymous, senior2, day, module="MR-07-0101")).status_code == 201


async def test_cancel_frees_the_place_and_reschedule_keeps_the_old_one_if_full(
    anonymous: httpx.AsyncClient, token_for: TokenFor, drive: Drive
) -> None:
    small = await open_module(anonymous, token_for, code="MR-13-0002", capacity=1)
    day = drive.next_open_day()
    a, b = person_doc()["curp"], person_doc()["curp"]
    first = await _book(anonymous, a, day, module=small.module)
    assert first.status_code == 201
    full = await _book(anonymous, b, day, module=small.module)
    assert full.status_code == 409
    assert "no quedan lugares" in full.json()["detail"]
    # b books elsewhere, then tries to move into the full day: b keeps the first booking.
    elsewhere = await _book(anonymous, b, day)
    folio_b = elsewhere.json()["folio"]
    moved = await anonymous.post(
        f"{E}/appointments/{folio_b}/reschedule",
        json={"curp": b, "module_code": small.module, "day": day.isoformat()},
    )
    assert moved.status_code == 409
    assert (await _book(anonymous, b, day)).status_code == 409  # still booked
    # Someone who does not know the CURP cannot cancel; the holder can.
    folio_a = first.json()["folio"]
    stranger = await anonymous.post(f"{E}/appointments/{folio_a}/cancel", json={"curp": b})
    assert stranger.status_code == 404
    cancelled = await anonymous.post(f"{E}/appointments/{folio_a}/cancel", json={"curp": a})
    assert cancelled.json()["status"] == "cancelled"
    moved = await anonymous.post(
        f"{E}/appointments/{folio_b}/reschedule",
        json={"curp": b, "module_code": small.module, "day": day.isoformat()},
    )
    assert moved.status_code == 201, moved.text
    assert moved.json()["module_code"] == small.module
    twice = await anonymous.post(f"{E}/appointments/{folio_a}/cancel", json={"curp": a})
    assert twice.status_code == 409


async def test_a_citizen_books_only_for_themselves_and_anonymous_bookings_are_audited(
    anonymous: httpx.AsyncClient,
    token_for: TokenFor,
    drive: Drive,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    mine, theirs = person_doc()["curp"], person_doc()["curp"]
    me = token_for(Role.CITIZEN, curp=mine)
    day = drive.next_open_day()
    assert (await _book(anonymous, theirs, day, headers=me)).status_code == 403
    assert (await _book(anonymous, mine, day, headers=me)).status_code == 201
    assert (await _book(anonymous, theirs, day)).status_code == 201  # no token: by CURP
    async with sessions() as s:
        rows = (
            await s.execute(
                select(AuditEvent.actor, AuditEvent.outcome).where(
                    AuditEvent.person_curp == theirs,
                    AuditEvent.action == "enrollment:appointment:book",
                )
            )
        ).all()
    assert sorted(rows) == [("anonimo", "success"), ("citizen.prueba", "denied")]


async def test_a_citizen_finds_and_cancels_a_booking_someone_made_with_their_curp(
    anonymous: httpx.AsyncClient, token_for: TokenFor, drive: Drive
) -> None:
    """Booking needs only a CURP, and the folio goes to whoever booked: signed in, the person
    sees their appointment with its folio and can cancel it."""
    curp = person_doc()["curp"]
    squatted = await _book(anonymous, curp, drive.next_open_day())  # someone else, by CURP
    assert squatted.status_code == 201, squatted.text
    me = token_for(Role.CITIZEN, curp=curp)
    mine = await anonymous.get(f"{E}/me/appointment", headers=me)
    assert mine.status_code == 200, mine.text
    assert mine.json()["folio"] == squatted.json()["folio"]
    cancel = await anonymous.post(f"{E}/appointments/{mine.json()['folio']}/cancel",
                                  json={"curp": curp}, headers=me)  # fmt: skip
    assert cancel.status_code == 200, cancel.text
    assert (await anonymous.get(f"{E}/me/appointment", headers=me)).status_code == 404
    assert (await anonymous.get(f"{E}/me/appointment")).status_code == 401
    clerk = token_for(Role.REGISTRATION_OPERATOR)  # no person of their own to look up
    assert (await anonymous.get(f"{E}/me/appointment", headers=clerk)).status_code == 403


async def test_nonsense_is_refused_with_the_field_not_a_500(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    admin = token_for(Role.INSTITUTION_ADMIN)
    phase = {"name": "X", "starts_on": "2027-02-01", "ends_on": "2027-01-01", "states": ["13"]}
    backwards = await anonymous.post(f"{E}/phases", headers=admin, json=phase)
    assert backwards.status_code == 422
    empty = await anonymous.post(f"{E}/phases", headers=admin,
                                 json={"name": "Y", "starts_on": "2027-02-01"})  # fmt: skip
    assert empty.status_code == 422
    assert "estados o municipios" in empty.text
    query = {"curp": person_doc()["curp"], "start": "9999-12-30"}
    far = await anonymous.get(f"{E}/modules/{MODULE}/availability", params=query)
    assert far.status_code == 200  # clamped to the booking horizon, not an overflow
    horizon = today_mx() + timedelta(days=90)
    assert all(date.fromisoformat(d["day"]) <= horizon for d in far.json()["days"])
    huge = await anonymous.post(f"{E}/reviews/{10**20}", json={"decision": "distinct"},
                                headers=drive.supervisor)  # fmt: skip
    assert huge.status_code == 422


async def test_bad_input_names_the_field(anonymous: httpx.AsyncClient, drive: Drive) -> None:
    bad_curp = await _book(anonymous, "XXXX000000XXXXXX00", drive.next_open_day())
    assert bad_curp.status_code == 422
    assert bad_curp.json()["errors"][0]["field"] == "curp"
    past = await _book(anonymous, person_doc()["curp"], today_mx() - timedelta(days=1))
    assert past.status_code == 422
    assert "pasó" in past.json()["errors"][0]["reason"]
    far = await _book(anonymous, person_doc()["curp"], today_mx() + timedelta(days=200))
    assert far.status_code == 422
    sunday = drive.next_open_day()
    while sunday.isoweekday() != 7:
        sunday += timedelta(days=1)
    closed = await _book(anonymous, person_doc()["curp"], sunday)
    assert "día de la semana" in closed.json()["errors"][0]["reason"]
    unknown = await _book(
        anonymous, person_doc()["curp"], drive.next_open_day(), module="MR-99-9999"
    )
    assert unknown.status_code == 404


async def test_two_people_never_take_the_last_place_under_parallel_requests(
    live_server: str, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Real HTTP requests in parallel against uvicorn (on PostgreSQL: concurrent
    transactions on separate connections), for a module with 5 places and 24 people."""
    capacity, people = 5, 24
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as c:
        await _open_calendar(c, token_for)
        drive = await open_module(c, token_for, capacity=capacity)
        day = drive.next_open_day()
        curps = [person_doc()["curp"] for _ in range(people)]
        answers = await asyncio.gather(
            *(_book(c, curp, day, headers=token_for(Role.CITIZEN, curp=curp)) for curp in curps)
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * capacity + [409] * (people - capacity), [a.text for a in answers]
    async with sessions() as s:
        counter = (await s.execute(select(ModuleDay.booked, ModuleDay.capacity))).one()
    assert tuple(counter) == (capacity, capacity)


async def test_reschedules_and_bookings_of_one_day_at_once_all_succeed(
    live_server: str, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Rescheduling (cancel, then book) while others book the same day: every request gets
    its place. The audit chain's lock is the last one a transaction takes; when a reschedule
    took it at its cancellation and then waited for the day's row, which a booking held while
    waiting for the chain's lock, PostgreSQL broke the cycle with a deadlock (a 500) for
    about half of them."""
    movers, bookers = 12, 12
    async with httpx.AsyncClient(
        base_url=live_server, timeout=60, limits=httpx.Limits(max_connections=40)
    ) as c:
        await _open_calendar(c, token_for, days=60)
        drive = await open_module(c, token_for, capacity=100)
        first = drive.next_open_day()
        second = drive.next_open_day(first)
        moving = [person_doc()["curp"] for _ in range(movers)]
        folios = []
        for curp in moving:
            booked = await _book(c, curp, first, headers=token_for(Role.CITIZEN, curp=curp))
            assert booked.status_code == 201, booked.text
            folios.append(booked.json()["folio"])
        calls = [
            c.post(f"{E}/appointments/{folio}/reschedule", headers=token_for(Role.CITIZEN, curp=m),
                   json={"curp": m, "module_code": MODULE, "day": second.isoformat()})
            for folio, m in zip(folios, moving, strict=True)
        ]  # fmt: skip
        for _ in range(bookers):
            curp = person_doc()["curp"]
            calls.append(_book(c, curp, second, headers=token_for(Role.CITIZEN, curp=curp)))
        answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [201] * (movers + bookers), [
        a.text for a in answers if a.status_code != 201
    ]


@pytest.mark.skipif(backend() != "postgresql", reason="a commit slowed by a PL/pgSQL trigger")
async def test_a_write_is_committed_before_its_answer_leaves(
    live_server: str, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A client that gets 201 and at once acts on what it created must find it: the
    transaction commits before the response is sent (not after it, in the background). A
    deferred trigger makes each booking's commit take 0.3 s, so a late commit is seen."""
    async with sessions() as s, s.begin():
        await s.execute(text(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$"
        ))  # fmt: skip
        await s.execute(text(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON appointments "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        ))  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=live_server, timeout=30) as c:
            await _open_calendar(c, token_for)
            drive = await open_module(c, token_for)
            curp = person_doc()["curp"]
            made = await _book(c, curp, drive.next_open_day(), headers=drive.operator)
            assert made.status_code == 201, made.text
            gone = await c.post(f"{E}/appointments/{made.json()['folio']}/cancel",
                                json={"curp": curp}, headers=drive.operator)  # fmt: skip
            assert gone.status_code == 200, gone.text
    finally:
        async with sessions() as s, s.begin():
            await s.execute(text("DROP TRIGGER slow_commit ON appointments"))
            await s.execute(text("DROP FUNCTION slow_commit()"))


async def test_a_module_created_twice_at_once_is_one_module_and_conflicts_not_errors(
    anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Two supervisors (or a double click) create the same module at the same moment: both
    pass the service's check, the unique index keeps one, and the other is told to repeat
    (409), never a 500."""
    supervisor = token_for(Role.SUPERVISOR, username="supervisor.prueba")
    body = {"code": "MR-13-0099", "name": "Módulo doble", "state": "13", "municipality": "048",
            "address": "Centro 1", "weekdays": "123456", "daily_capacity": 50}  # fmt: skip
    answers = await asyncio.gather(
        *(anonymous.post(f"{E}/modules", headers=supervisor, json=body) for _ in range(6))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 5, [a.text for a in answers]
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers[1:]
               if a.status_code == 409)  # fmt: skip


async def test_one_modules_supervisor_sets_no_national_rules(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    """The calendar and the phases are the whole country's: any of 1,700 supervisors could
    replace the active calendar, open every state, or open modules elsewhere and become
    their supervisor. Now the ministry (institution_admin) sets the rules, and a supervisor
    opens only their own module."""
    today = today_mx().isoformat()
    until = (today_mx() + timedelta(days=30)).isoformat()
    calendar = {"name": "solo Z", "active": True,
                "rules": [{"starts_on": today, "ends_on": until, "letters": "Z"}]}  # fmt: skip
    phase = {"name": "todo", "starts_on": today, "states": ["07"]}
    for path, body in ((f"{E}/calendars", calendar), (f"{E}/phases", phase)):
        refused = await anonymous.post(path, json=body, headers=drive.supervisor)
        assert refused.status_code == 403, (path, refused.text)
    elsewhere = {"code": "MR-07-0002", "name": "Otro", "state": "07", "address": "Centro 2",
                 "weekdays": "12345", "daily_capacity": 50}  # fmt: skip
    refused = await anonymous.post(f"{E}/modules", json=elsewhere, headers=drive.supervisor)
    assert refused.status_code == 403, refused.text
    assert "MR-13-0001" in refused.json()["detail"]
    ministry = token_for(Role.INSTITUTION_ADMIN)
    assert (await anonymous.post(f"{E}/phases", json=phase, headers=ministry)).status_code == 201


async def test_anonymous_booking_is_limited_per_address_and_says_when_to_retry(
    anonymous: httpx.AsyncClient, drive: Drive, settings: Settings
) -> None:
    """Booking by CURP without signing in is limited per address: past the limit, a 429 that
    says when to try again (Retry-After) and what was limited (it spoke of validations)."""
    day = drive.next_open_day()
    answers = [
        await _book(anonymous, person_doc()["curp"], day)
        for _ in range(settings.public_booking_per_minute + 1)
    ]
    assert [a.status_code for a in answers[:-1]] == [201] * settings.public_booking_per_minute
    limited = answers[-1]
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert "cita" in limited.json()["detail"]


async def test_a_reschedule_keeps_the_contact_given_at_booking(
    anonymous: httpx.AsyncClient, drive: Drive, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The new appointment was booked without it: the notices of the new day reached nobody."""
    curp = person_doc()["curp"]
    day = drive.next_open_day()
    booked = await anonymous.post(f"{E}/appointments", json={
        "curp": curp, "module_code": MODULE, "day": day.isoformat(), "contact": "771 555 0101",
    })  # fmt: skip
    assert booked.status_code == 201, booked.text
    later = drive.next_open_day(day)
    moved = await anonymous.post(
        f"{E}/appointments/{booked.json()['folio']}/reschedule",
        json={"curp": curp, "module_code": MODULE, "day": later.isoformat()},
    )
    assert moved.status_code == 201, moved.text
    async with sessions() as s:
        rows = (await s.execute(text(
            "SELECT folio, status, contact FROM appointments ORDER BY id"))).all()  # fmt: skip
    assert [(r.status, r.contact) for r in rows] == [
        ("cancelled", "771 555 0101"),
        ("booked", "771 555 0101"),
    ]
    assert rows[1].folio == moved.json()["folio"]
