"""Modules, phases, calendars and appointments: where and when a person may come.

Booking needs only the CURP: its first letter is the first surname's initial and it encodes
the birth date, which is all the calendar asks. A place is taken with one conditional UPDATE
on the day's counter (see models.ModuleDay), so capacity holds under any concurrency."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import service as accounts
from salud.access.context import Caller
from salud.access.permissions import Permission, Role
from salud.access.principal import Principal
from salud.access.schemas import AccountRead
from salud.enrollment import repository
from salud.enrollment.calendar import Calendar, Phase, state_open, surname_letter, weekday_open
from salud.enrollment.models import (
    Appointment,
    EnrollmentCalendar,
    EnrollmentPhase,
    RegistrationModule,
)
from salud.enrollment.planner_inputs import PlannedModule
from salud.enrollment.schemas import (
    APPOINTMENT_STATUS_WORDS,
    MODULE_STATUS_WORDS,
    AppointmentRead,
    AppointmentStatus,
    AvailabilityRead,
    BookingIn,
    CalendarCreate,
    CalendarRead,
    DayRead,
    ModuleCreate,
    ModuleRead,
    ModuleStatus,
    PhaseCreate,
    RescheduleIn,
    in_words,
)
from salud.errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound
from salud.identity import curp as curp_rules
from salud.identity.service import check_curp
from salud.kit.clock import today_mx, utcnow

BOOKING_HORIZON_DAYS = 90
_FOLIO_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a desk


def new_folio(prefix: str, length: int = 8) -> str:
    return prefix + "".join(secrets.choice(_FOLIO_ALPHABET) for _ in range(length))


ANONYMOUS = "anonymous"
NOT_BOOKABLE = (
    "no es posible agendar con esa CURP: si ya tiene una cita o ya acudió a un módulo, "
    "consulte su folio o inicie sesión"
)


def anonymous_principal(curp: str) -> Principal:
    """Whoever books with only a CURP (as the government's booking site allows): recorded in
    the audit log as `anonimo` acting for that CURP. Adapters rate-limit it per address."""
    return Principal(subject=ANONYMOUS, username="anonimo", role=Role.CITIZEN, curp=curp)


def module_read(m: RegistrationModule) -> ModuleRead:
    return ModuleRead(
        code=m.code, name=m.name, address=m.address, state=m.state,
        municipality=m.municipality, latitude=m.latitude, longitude=m.longitude,
        weekdays=m.weekdays, opens_at=m.opens_at, closes_at=m.closes_at,
        daily_capacity=m.daily_capacity, status=ModuleStatus(m.status),
        supervisor=m.supervisor, opened_at=m.opened_at, opened_by=m.opened_by,
    )  # fmt: skip


async def module(session: AsyncSession, code: str) -> RegistrationModule:
    found = await repository.module_by_code(session, code)
    if found is None:
        raise NotFound(f"no hay un módulo con la clave {code}")
    return found


async def check_runs_module(caller: Caller, m: RegistrationModule) -> None:
    """Staff act only at their own module (a supervisor also at the modules they supervise).
    A refusal is recorded, like any denied access."""
    p = caller.principal
    if p.module_code == m.code or (p.role is Role.SUPERVISOR and m.supervisor == p.username):
        return
    await caller.record(
        "enrollment:module:access", "module", subject_id=m.code, outcome="denied",
        detail={"module_of_account": p.module_code},
    )  # fmt: skip
    raise Forbidden(f"su cuenta no está asignada al módulo {m.code}")


def runs_modules(caller: Caller, modules: list[RegistrationModule]) -> list[int]:
    """Ids of the modules among these the caller works at or supervises."""
    p = caller.principal
    return [
        m.id
        for m in modules
        if p.module_code == m.code or (p.role is Role.SUPERVISOR and m.supervisor == p.username)
    ]


# --- modules ------------------------------------------------------------------------------


async def create_module(session: AsyncSession, data: ModuleCreate, caller: Caller) -> ModuleRead:
    await caller.allow(Permission.MODULE_MANAGE, "enrollment:module:create", "module")
    p = caller.principal
    if p.role is Role.SUPERVISOR and p.module_code not in (None, data.code):
        # A supervisor of one module does not open modules across the country (and become
        # their supervisor); their own account's module, or any while they have none.
        await caller.record(
            "enrollment:module:create", "module", subject_id=data.code, outcome="denied",
            detail={"supervises": p.module_code},
        )  # fmt: skip
        raise Forbidden(f"usted supervisa el módulo {p.module_code}: no da de alta otros")
    if await repository.module_by_code(session, data.code) is not None:
        raise Conflict("ya existe un módulo con esa clave", [FieldProblem("code", "ya existe")])
    supervisor = data.supervisor or (
        caller.actor if caller.principal.role is Role.SUPERVISOR else None
    )
    row = RegistrationModule(
        **data.model_dump(exclude={"supervisor"}), supervisor=supervisor, status="planned",
        created_at=utcnow(), created_by=caller.actor, opened_at=None, opened_by=None,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    await caller.record("enrollment:module:create", "module", subject_id=data.code, within=session)
    return module_read(row)


async def list_modules(
    session: AsyncSession, state: str | None = None, status: str | None = None
) -> list[ModuleRead]:
    """Public: where the modules are and when they work (no personal data)."""
    return [module_read(m) for m in await repository.modules(session, state, status)]


async def get_module(session: AsyncSession, code: str) -> ModuleRead:
    return module_read(await module(session, code))


async def set_module_status(
    session: AsyncSession, code: str, status: ModuleStatus, caller: Caller
) -> ModuleRead:
    """A supervisor opens (or closes) their module. Closing keeps existing appointments."""
    await caller.allow(Permission.MODULE_MANAGE, f"enrollment:module:{status.value}", "module")
    m = await repository.module_by_code(session, code, lock=True)
    if m is None:
        raise NotFound(f"no hay un módulo con la clave {code}")
    await check_runs_module(caller, m)
    if m.status == status.value:
        raise Conflict(f"el módulo ya está {in_words(MODULE_STATUS_WORDS, m.status)}")
    m.status = status.value
    if status is ModuleStatus.OPEN:
        m.opened_at, m.opened_by = utcnow(), caller.actor
    await session.flush()
    await caller.record(
        f"enrollment:module:{status.value}", "module", subject_id=code, within=session
    )
    return module_read(m)


async def assign_staff(
    session: AsyncSession, code: str, username: str, caller: Caller
) -> list[AccountRead]:
    await caller.allow(Permission.MODULE_MANAGE, "enrollment:module:assign", "module")
    m = await module(session, code)
    await check_runs_module(caller, m)
    await accounts.assign_module(session, username, code)
    await caller.record(
        "enrollment:module:assign", "module", subject_id=code, within=session,
        detail={"username": username},
    )  # fmt: skip
    return await accounts.staff_at_module(session, code)


async def staff(session: AsyncSession, code: str, caller: Caller) -> list[AccountRead]:
    await caller.allow(Permission.MODULE_MANAGE, "enrollment:module:staff", "module")
    m = await module(session, code)
    await check_runs_module(caller, m)
    return await accounts.staff_at_module(session, code)


# --- phases and calendars -------------------------------------------------------------------


async def create_phase(session: AsyncSession, data: PhaseCreate, caller: Caller) -> Phase:
    await caller.allow(Permission.CALENDAR_MANAGE, "enrollment:phase:create", "phase")
    phase = Phase(name=data.name, starts_on=data.starts_on, ends_on=data.ends_on,
                  states=sorted(set(data.states)),
                  municipalities=sorted(set(data.municipalities)))  # fmt: skip
    session.add(EnrollmentPhase(
        name=phase.name, starts_on=phase.starts_on, ends_on=phase.ends_on, states=phase.states,
        municipalities=phase.municipalities, created_at=utcnow(), created_by=caller.actor,
    ))  # fmt: skip
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(
            "ya existe una fase con ese nombre", [FieldProblem("name", "ya existe")]
        ) from None
    await caller.record("enrollment:phase:create", "phase", subject_id=data.name, within=session)
    return phase


async def list_phases(session: AsyncSession) -> list[Phase]:
    return [
        Phase(
            name=p.name,
            starts_on=p.starts_on,
            ends_on=p.ends_on,
            states=p.states,
            municipalities=p.municipalities,
        )
        for p in await repository.phases(session)
    ]


def _calendar_read(row: EnrollmentCalendar) -> CalendarRead:
    return CalendarRead.model_validate({"name": row.name, "active": row.active, "rules": row.rules})


async def create_calendar(
    session: AsyncSession, data: CalendarCreate, caller: Caller
) -> CalendarRead:
    await caller.allow(Permission.CALENDAR_MANAGE, "enrollment:calendar:create", "calendar")
    if await repository.calendar_by_name(session, data.name) is not None:
        raise Conflict(
            "ya existe un calendario con ese nombre", [FieldProblem("name", "ya existe")]
        )
    if data.active:
        await repository.deactivate_calendars(session)
    row = EnrollmentCalendar(
        name=data.name, active=data.active,
        rules=[r.model_dump(mode="json") for r in data.rules],
        created_at=utcnow(), created_by=caller.actor,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    await caller.record(
        "enrollment:calendar:create", "calendar", subject_id=data.name, within=session
    )
    return _calendar_read(row)


async def activate_calendar(session: AsyncSession, name: str, caller: Caller) -> CalendarRead:
    await caller.allow(Permission.CALENDAR_MANAGE, "enrollment:calendar:activate", "calendar")
    row = await repository.calendar_by_name(session, name)
    if row is None:
        raise NotFound(f"no hay un calendario llamado {name}")
    await repository.deactivate_calendars(session)
    row.active = True
    await session.flush()
    await caller.record("enrollment:calendar:activate", "calendar", subject_id=name, within=session)
    return _calendar_read(row)


async def list_calendars(session: AsyncSession) -> list[CalendarRead]:
    return [_calendar_read(r) for r in await repository.calendars(session)]


async def active_calendar(session: AsyncSession) -> Calendar:
    row = await repository.active_calendar(session)
    if row is None:
        raise Conflict("aún no hay un calendario de credencialización vigente")
    return Calendar.model_validate({"name": row.name, "rules": row.rules})


@dataclass(frozen=True)
class LiveSetup:
    """The drive as the system holds it, for the planner: modules not closed, every stored
    calendar (and which is in force), the phases."""

    modules: list[PlannedModule]
    calendars: dict[str, Calendar]
    active: str | None
    phases: list[Phase]


async def live_setup(session: AsyncSession) -> LiveSetup:
    """The stored modules (each planned in its municipality when it has one, else its state),
    calendars and phases (no personal data: what the planner projects from)."""
    modules = [
        PlannedModule(
            area=m.state + m.municipality if m.municipality else m.state,
            capacity=m.daily_capacity, weekdays=m.weekdays, name=m.code,
        )
        for m in await repository.modules(session, None, None)
        if m.status != "closed"
    ]  # fmt: skip
    rows = await repository.calendars(session)
    calendars = {r.name: Calendar.model_validate({"name": r.name, "rules": r.rules}) for r in rows}
    active = next((r.name for r in rows if r.active), None)
    return LiveSetup(modules, calendars, active, await list_phases(session))


# --- availability and appointments ----------------------------------------------------------


def _birth(curp: str) -> date:
    check_curp(curp)
    return curp_rules.parse(curp).birth_date


async def _bookable_days(
    session: AsyncSession, m: RegistrationModule, curp: str, start: date, end: date
) -> list[DayRead]:
    calendar = await active_calendar(session)
    phases = await list_phases(session)
    letter, birth = surname_letter(curp), _birth(curp)
    counts = await repository.day_counts(session, m.id, start, end)
    out: list[DayRead] = []
    for day in calendar.days_for(letter, birth, start, end):
        if not weekday_open(m.weekdays, day) or not state_open(
            phases, m.state, day, m.municipality
        ):
            continue
        capacity, booked = counts.get(day, (m.daily_capacity, 0))
        out.append(DayRead(day=day, capacity=capacity, booked=booked, free=capacity - booked))
    return out


async def availability(
    session: AsyncSession, code: str, curp: str, start: date | None = None, days: int = 30
) -> AvailabilityRead:
    """The days this person may come to this module, with the places left (public: it says
    nothing about the person that the CURP does not already say)."""
    m = await module(session, code)
    last = today_mx() + timedelta(days=BOOKING_HORIZON_DAYS)
    start = min(max(start or today_mx(), today_mx()), last)
    end = min(start + timedelta(days=max(1, min(days, BOOKING_HORIZON_DAYS)) - 1),
              today_mx() + timedelta(days=BOOKING_HORIZON_DAYS))  # fmt: skip
    found = [] if m.status != "open" else await _bookable_days(session, m, curp, start, end)
    return AvailabilityRead(module=module_read(m), letter=surname_letter(curp), days=found)


def _appointment_read(a: Appointment, m: RegistrationModule) -> AppointmentRead:
    return AppointmentRead(
        folio=a.folio, curp=a.person_curp, module_code=m.code, module_name=m.name,
        address=m.address, day=a.day, opens_at=m.opens_at, closes_at=m.closes_at,
        status=AppointmentStatus(a.status),
    )  # fmt: skip


async def _why_not(
    session: AsyncSession, m: RegistrationModule, curp: str, day: date
) -> str | None:
    """The reason this person cannot come that day (None: they may)."""
    today = today_mx()
    if m.status != "open":
        return "el módulo no está abierto"
    if day < today:
        return "la fecha ya pasó"
    if day > today + timedelta(days=BOOKING_HORIZON_DAYS):
        return f"solo se agenda con hasta {BOOKING_HORIZON_DAYS} días de anticipación"
    if not weekday_open(m.weekdays, day):
        return "el módulo no abre ese día de la semana"
    if not state_open(await list_phases(session), m.state, day, m.municipality):
        return "la credencialización aún no abre en ese estado o municipio ese día"
    calendar = await active_calendar(session)
    if not calendar.allows(surname_letter(curp), _birth(curp), day):
        return (
            f"el calendario no asigna ese día a la letra {surname_letter(curp)} "
            "y su grupo de edad; consulte los días disponibles"
        )
    return None


async def _take(session: AsyncSession, m: RegistrationModule, day: date) -> None:
    await repository.ensure_day(session, m.id, day, m.daily_capacity)
    if not await repository.take_place(session, m.id, day):
        raise Conflict(
            "ya no quedan lugares ese día en ese módulo; elija otro día",
            [FieldProblem("day", "sin lugares")],
        )


async def book(session: AsyncSession, data: BookingIn, caller: Caller) -> AppointmentRead:
    check_curp(data.curp)
    await caller.allow(
        Permission.APPOINTMENT_BOOK, "enrollment:appointment:book", "appointment",
        person_curp=data.curp,
    )  # fmt: skip
    m = await module(session, data.module_code)
    reason = await _why_not(session, m, data.curp, data.day)
    if reason:
        raise InvalidInput.on("day", reason)
    # Whoever books without signing in gets one answer for "already booked" and "already
    # enrolled", so the public form does not tell who has been enrolled.
    anonymous = caller.principal.subject == ANONYMOUS
    if await repository.booked_for(session, data.curp) is not None:
        raise Conflict(NOT_BOOKABLE if anonymous else
                       "esa CURP ya tiene una cita; cancélela o cámbiela antes de agendar otra",
                       [FieldProblem("curp", "no se puede agendar")])  # fmt: skip
    if (live := await repository.live_enrollment_for(session, data.curp)) is not None:
        done = live.status == "completed"
        raise Conflict(NOT_BOOKABLE if anonymous else "esa persona ya fue credencializada" if done
                       else "esa persona tiene un registro en curso en un módulo")  # fmt: skip
    await _take(session, m, data.day)
    now = utcnow()
    row = Appointment(
        folio=new_folio("C"), person_curp=data.curp, module_id=m.id, day=data.day,
        status="booked", contact=data.contact, booked_at=now, booked_by=caller.actor,
        changed_at=now,
    )  # fmt: skip
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # the same CURP booked at the same moment elsewhere
        raise Conflict(NOT_BOOKABLE if anonymous else "esa CURP ya tiene una cita") from None
    await caller.record(
        "enrollment:appointment:book", "appointment", person_curp=data.curp,
        subject_id=row.folio, within=session,
        detail={"module": m.code, "day": data.day.isoformat()},
    )  # fmt: skip
    return _appointment_read(row, m)


async def _owned(session: AsyncSession, folio: str, curp: str, caller: Caller) -> Appointment:
    await caller.allow(
        Permission.APPOINTMENT_BOOK, "enrollment:appointment:change", "appointment",
        person_curp=curp, subject_id=folio,
    )  # fmt: skip
    row = await repository.appointment_by_folio(session, folio, lock=True)
    # The same answer for an unknown folio and a folio of another CURP: no oracle.
    if row is None or row.person_curp != curp:
        raise NotFound("no hay una cita con ese folio para esa CURP")
    if row.status != "booked":
        raise Conflict(
            f"la cita ya no está vigente ({in_words(APPOINTMENT_STATUS_WORDS, row.status)})"
        )
    return row


async def my_appointment(session: AsyncSession, caller: Caller) -> AppointmentRead:
    """The signed-in person's appointment in force, with its folio: so that they can cancel
    or move it even when someone else booked it with their CURP (booking needs only a CURP;
    the folio went to whoever booked)."""
    curp = caller.principal.curp
    if curp is None:
        raise Forbidden("solo la persona misma consulta su cita")
    await caller.allow(
        Permission.APPOINTMENT_BOOK, "enrollment:appointment:read", "appointment",
        person_curp=curp,
    )  # fmt: skip
    row = await repository.booked_for(session, curp)
    await caller.record(
        "enrollment:appointment:read", "appointment", person_curp=curp,
        subject_id=row.folio if row else None, outcome="success" if row else "not_found",
    )  # fmt: skip
    if row is None:
        raise NotFound("no tiene una cita vigente")
    return _appointment_read(row, await repository.module_by_id(session, row.module_id))


async def get_appointment(
    session: AsyncSession, folio: str, curp: str, caller: Caller
) -> AppointmentRead:
    row = await repository.appointment_by_folio(session, folio)
    if row is None or row.person_curp != curp:
        raise NotFound("no hay una cita con ese folio para esa CURP")
    await caller.allow(
        Permission.APPOINTMENT_BOOK, "enrollment:appointment:read", "appointment",
        person_curp=curp, subject_id=folio,
    )  # fmt: skip
    return _appointment_read(row, await repository.module_by_id(session, row.module_id))


async def cancel(session: AsyncSession, folio: str, curp: str, caller: Caller) -> AppointmentRead:
    return await _cancel(session, await _owned(session, folio, curp, caller), curp, caller)


async def _cancel(
    session: AsyncSession, row: Appointment, curp: str, caller: Caller
) -> AppointmentRead:
    folio = row.folio
    row.status, row.changed_at = "cancelled", utcnow()
    await repository.free_place(session, row.module_id, row.day)
    await session.flush()
    await caller.record(
        "enrollment:appointment:cancel", "appointment", person_curp=curp, subject_id=folio,
        within=session,
    )  # fmt: skip
    return _appointment_read(row, await repository.module_by_id(session, row.module_id))


async def reschedule(
    session: AsyncSession, folio: str, data: RescheduleIn, caller: Caller
) -> AppointmentRead:
    """Cancel and book again in one transaction: if the new day is full, the old place stays.
    The contact given at booking goes with it (the notices of the new day reach the person)."""
    row = await _owned(session, folio, data.curp, caller)
    contact = row.contact
    await _cancel(session, row, data.curp, caller)
    moved = BookingIn(curp=data.curp, module_code=data.module_code, day=data.day, contact=contact)
    return await book(session, moved, caller)


async def module_agenda(
    session: AsyncSession, code: str, day: date, caller: Caller
) -> list[AppointmentRead]:
    await caller.allow(Permission.APPOINTMENT_READ, "enrollment:agenda:read", "module")
    m = await module(session, code)
    await check_runs_module(caller, m)
    rows = await repository.agenda(session, m.id, day)
    await caller.record_persons("enrollment:agenda:read", [r.person_curp for r in rows])
    return [_appointment_read(r, m) for r in rows]
