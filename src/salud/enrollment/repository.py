"""All SQL of credentialization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from salud.credentials.models import Credential, CredentialEvent
from salud.enrollment.models import (
    Appointment,
    DuplicateReview,
    Enrollment,
    EnrollmentCalendar,
    EnrollmentPhase,
    Fingerprint,
    ModuleDay,
    PrintBatch,
    PrintBatchCard,
    ProgressSnapshot,
    RegistrationModule,
)
from salud.identity.models import Person, PersonPhoto
from salud.kit.text import search_key
from salud.storage.engine import dialect_name

# --- modules, phases, calendars -------------------------------------------------------------


async def module_by_code(
    session: AsyncSession, code: str, *, lock: bool = False
) -> RegistrationModule | None:
    stmt = select(RegistrationModule).where(RegistrationModule.code == code)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def module_by_id(session: AsyncSession, module_id: int) -> RegistrationModule:
    found = await session.get(RegistrationModule, module_id)
    assert found is not None  # a foreign key points at it
    return found


async def modules(
    session: AsyncSession, state: str | None, status: str | None
) -> Sequence[RegistrationModule]:
    stmt = select(RegistrationModule).order_by(RegistrationModule.code)
    if state:
        stmt = stmt.where(RegistrationModule.state == state)
    if status:
        stmt = stmt.where(RegistrationModule.status == status)
    return (await session.execute(stmt)).scalars().all()


async def phases(session: AsyncSession) -> Sequence[EnrollmentPhase]:
    stmt = select(EnrollmentPhase).order_by(EnrollmentPhase.starts_on, EnrollmentPhase.name)
    return (await session.execute(stmt)).scalars().all()


async def calendars(session: AsyncSession) -> Sequence[EnrollmentCalendar]:
    stmt = select(EnrollmentCalendar).order_by(EnrollmentCalendar.name)
    return (await session.execute(stmt)).scalars().all()


async def calendar_by_name(session: AsyncSession, name: str) -> EnrollmentCalendar | None:
    stmt = select(EnrollmentCalendar).where(EnrollmentCalendar.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def active_calendar(session: AsyncSession) -> EnrollmentCalendar | None:
    stmt = select(EnrollmentCalendar).where(EnrollmentCalendar.active.is_(True))
    return (await session.execute(stmt)).scalar_one_or_none()


async def deactivate_calendars(session: AsyncSession) -> None:
    await session.execute(
        update(EnrollmentCalendar).where(EnrollmentCalendar.active.is_(True)).values(active=False)
    )
    await session.flush()


# --- places and appointments ----------------------------------------------------------------


async def day_counts(
    session: AsyncSession, module_id: int, start: date, end: date
) -> dict[date, tuple[int, int]]:
    rows = await session.execute(
        select(ModuleDay.day, ModuleDay.capacity, ModuleDay.booked).where(
            ModuleDay.module_id == module_id, ModuleDay.day.between(start, end)
        )
    )
    return {r.day: (r.capacity, r.booked) for r in rows}


async def ensure_day(session: AsyncSession, module_id: int, day: date, capacity: int) -> None:
    """The day's counter row, created by whoever books first (a concurrent creator wins
    harmlessly: ON CONFLICT DO NOTHING)."""
    values: dict[str, Any] = {"module_id": module_id, "day": day, "capacity": capacity, "booked": 0}
    if dialect_name(session) == "postgresql":
        stmt: Any = pg_insert(ModuleDay).values(values).on_conflict_do_nothing()
    else:
        stmt = sqlite_insert(ModuleDay).values(values).on_conflict_do_nothing()
    await session.execute(stmt)


async def take_place(session: AsyncSession, module_id: int, day: date) -> bool:
    """One place, if one is left: a single conditional UPDATE. On PostgreSQL a concurrent
    booking of the same day waits for this row's lock and then re-checks `booked < capacity`
    (READ COMMITTED re-evaluates the WHERE on the updated row); SQLite has one writer."""
    result = await session.execute(
        update(ModuleDay)
        .where(
            ModuleDay.module_id == module_id,
            ModuleDay.day == day,
            ModuleDay.booked < ModuleDay.capacity,
        )
        .values(booked=ModuleDay.booked + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def free_place(session: AsyncSession, module_id: int, day: date) -> None:
    await session.execute(
        update(ModuleDay)
        .where(ModuleDay.module_id == module_id, ModuleDay.day == day, ModuleDay.booked > 0)
        .values(booked=ModuleDay.booked - 1)
        .execution_options(synchronize_session=False)
    )


async def appointment_by_folio(
    session: AsyncSession, folio: str, *, lock: bool = False
) -> Appointment | None:
    stmt = select(Appointment).where(Appointment.folio == folio)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def booked_for(session: AsyncSession, curp: str) -> Appointment | None:
    stmt = select(Appointment).where(
        Appointment.person_curp == curp, Appointment.status == "booked"
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def settle_appointment(
    session: AsyncSession, appointment_id: int, status: str, at: datetime
) -> bool:
    """Move a booked appointment to `status` (kept, cancelled) if it is still booked
    (compare-and-set: one cancelled or moved meanwhile stays as it is); whether it was."""
    result = await session.execute(
        update(Appointment)
        .where(Appointment.id == appointment_id, Appointment.status == "booked")
        .values(status=status, changed_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def agenda(session: AsyncSession, module_id: int, day: date) -> Sequence[Appointment]:
    stmt = (
        select(Appointment)
        .where(Appointment.module_id == module_id, Appointment.day == day)
        .order_by(Appointment.booked_at)
    )
    return (await session.execute(stmt)).scalars().all()


# --- enrollments --------------------------------------------------------------------------


async def enrollment_by_folio(
    session: AsyncSession, folio: str, *, lock: bool = False
) -> Enrollment | None:
    stmt = select(Enrollment).where(Enrollment.folio == folio)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def live_enrollment_for(
    session: AsyncSession, curp: str, *, lock: bool = False
) -> Enrollment | None:
    stmt = select(Enrollment).where(
        Enrollment.person_curp == curp, Enrollment.status != "cancelled"
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def probable_duplicates(session: AsyncSession, person: Person) -> list[str]:
    """Other CURPs with the same names (both surnames, folded: accents and case aside; no
    second surname matches only no second surname), birth date and state of birth."""
    stmt = select(Person.curp, Person.second_surname).where(
        Person.first_surname_key == person.first_surname_key,
        Person.given_names_key == person.given_names_key,
        Person.birth_date == person.birth_date,
        Person.birth_state == person.birth_state,
        Person.curp != person.curp,
    )
    second = search_key(person.second_surname or "")
    rows = (await session.execute(stmt.limit(200))).all()
    return [curp for curp, other in rows if search_key(other or "") == second][:20]


async def has_photo(session: AsyncSession, curp: str, version: int | None) -> bool:
    """Whether the person's current photo is this version (the one an enrollment took): a
    photo put through the registry since replaced it, and the card would show that one."""
    if version is None:
        return False
    found = await session.scalar(
        select(PersonPhoto.id).where(
            PersonPhoto.person_curp == curp, PersonPhoto.version == version
        )
    )
    return found is not None


async def open_enrollments(
    session: AsyncSession, module_id: int, limit: int
) -> Sequence[tuple[Enrollment, Person]]:
    """The module's enrollments under way (open or in review) with their person, the
    oldest first."""
    stmt = (
        select(Enrollment, Person)
        .join(Person, Person.curp == Enrollment.person_curp)
        .where(Enrollment.module_id == module_id, Enrollment.status.in_(("open", "review")))
        .order_by(Enrollment.started_at, Enrollment.id)
        .limit(limit)
    )
    return [(e, p) for e, p in (await session.execute(stmt)).all()]


async def current_photo_versions(session: AsyncSession, curps: Sequence[str]) -> dict[str, int]:
    """The current photo's version of each of these persons that has one."""
    if not curps:
        return {}
    stmt = select(PersonPhoto.person_curp, PersonPhoto.version).where(
        PersonPhoto.person_curp.in_(curps)
    )
    return {c: v for c, v in (await session.execute(stmt)).all()}


async def fingers_since_start(
    session: AsyncSession, enrollment_ids: Sequence[int]
) -> dict[int, list[int]]:
    """For each of these enrollments, the fingers captured since it started."""
    if not enrollment_ids:
        return {}
    stmt = (
        select(Enrollment.id, Fingerprint.finger)
        .join(Fingerprint, Fingerprint.person_curp == Enrollment.person_curp)
        .where(Enrollment.id.in_(enrollment_ids), Fingerprint.captured_at >= Enrollment.started_at)
        .order_by(Enrollment.id, Fingerprint.finger)
    )
    out: dict[int, list[int]] = {}
    for enrollment_id, finger in (await session.execute(stmt)).all():
        out.setdefault(enrollment_id, []).append(finger)
    return out


async def fingers_of(session: AsyncSession, curp: str, *, since: datetime) -> list[int]:
    """The fingers captured at or after `since`."""
    stmt = select(Fingerprint.finger).where(
        Fingerprint.person_curp == curp, Fingerprint.captured_at >= since
    )
    return sorted((await session.execute(stmt)).scalars())


async def fingerprint(session: AsyncSession, curp: str, finger: int) -> Fingerprint | None:
    stmt = (
        select(Fingerprint)
        .where(Fingerprint.person_curp == curp, Fingerprint.finger == finger)
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def fingerprints(session: AsyncSession, curp: str) -> Sequence[Fingerprint]:
    stmt = select(Fingerprint).where(Fingerprint.person_curp == curp).order_by(Fingerprint.finger)
    return (await session.execute(stmt)).scalars().all()


async def all_fingerprints(session: AsyncSession) -> Sequence[Fingerprint]:
    return (await session.execute(select(Fingerprint))).scalars().all()


async def pending_reviews(session: AsyncSession, enrollment_id: int) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(DuplicateReview)
        .where(DuplicateReview.enrollment_id == enrollment_id, DuplicateReview.status == "pending")
    )
    return int(found or 0)


async def modules_run_by(
    session: AsyncSession, module_code: str | None, supervisor: str | None
) -> list[int]:
    """Ids of the module an account works at and of the modules a supervisor supervises."""
    conditions = []
    if module_code:
        conditions.append(RegistrationModule.code == module_code)
    if supervisor:
        conditions.append(RegistrationModule.supervisor == supervisor)
    if not conditions:
        return []
    stmt = select(RegistrationModule.id).where(or_(*conditions))
    return list((await session.execute(stmt)).scalars())


async def reviews(
    session: AsyncSession, status: str | None, module_ids: list[int]
) -> Sequence[tuple[DuplicateReview, str]]:
    stmt = (
        select(DuplicateReview, Enrollment.folio)
        .join(Enrollment, Enrollment.id == DuplicateReview.enrollment_id)
        .order_by(DuplicateReview.id)
    )
    if status:
        stmt = stmt.where(DuplicateReview.status == status)
    if status == "pending":  # a cancelled enrollment's are moot (a duplicate decided it)
        stmt = stmt.where(Enrollment.status != "cancelled")
    stmt = stmt.where(Enrollment.module_id.in_(module_ids))
    return [(r, f) for r, f in (await session.execute(stmt.limit(500))).all()]


async def decided_distinct(
    session: AsyncSession, curp: str, *, either_way: bool = False
) -> set[str]:
    """The CURPs a supervisor judged another person than this one (reviews `distinct`); with
    `either_way`, also those whose own review judged this one another person (a pair is a
    pair, whichever of the two was enrolling)."""
    stmt = select(DuplicateReview.candidate_curp).where(
        DuplicateReview.person_curp == curp, DuplicateReview.status == "distinct"
    )
    found = set((await session.execute(stmt)).scalars())
    if either_way:
        back = select(DuplicateReview.person_curp).where(
            DuplicateReview.candidate_curp == curp, DuplicateReview.status == "distinct"
        )
        found |= set((await session.execute(back)).scalars())
    return found


async def latest_decided_review(session: AsyncSession, curp: str) -> DuplicateReview | None:
    """The last review of this CURP's enrollments a supervisor decided (distinct or
    duplicate), if any."""
    stmt = (
        select(DuplicateReview)
        .where(
            DuplicateReview.person_curp == curp,
            DuplicateReview.status.in_(("distinct", "duplicate")),
        )
        .order_by(DuplicateReview.decided_at.desc(), DuplicateReview.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def cancel_pending_reviews(
    session: AsyncSession, enrollment_id: int, at: datetime, by: str, note: str
) -> int:
    """Close the enrollment's reviews still pending as `cancelled` (its enrollment no longer
    goes on); how many."""
    result = await session.execute(
        update(DuplicateReview)
        .where(DuplicateReview.enrollment_id == enrollment_id, DuplicateReview.status == "pending")
        .values(status="cancelled", decided_at=at, decided_by=by, note=note[:500])
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def review_by_id(session: AsyncSession, review_id: int) -> DuplicateReview | None:
    stmt = select(DuplicateReview).where(DuplicateReview.id == review_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


# --- printing -------------------------------------------------------------------------------


async def cards_to_print(
    session: AsyncSession, module_id: int, limit: int
) -> list[tuple[str, str]]:
    """Issued cards (first cards and reissues) of persons enrolled at this module, in no
    batch yet; oldest first."""
    stmt = (
        select(Credential.credential_id, Credential.person_curp)
        .join(
            Enrollment,
            and_(
                Enrollment.person_curp == Credential.person_curp,
                Enrollment.status == "completed",
                Enrollment.module_id == module_id,
            ),
        )
        .outerjoin(PrintBatchCard, PrintBatchCard.credential_id == Credential.credential_id)
        .where(Credential.status == "issued", PrintBatchCard.id.is_(None))
        .order_by(Credential.issued_at)
        .limit(limit)
    )
    return [(c, p) for c, p in (await session.execute(stmt)).all()]


async def batch_by_code(
    session: AsyncSession, code: str, *, lock: bool = False
) -> PrintBatch | None:
    stmt = select(PrintBatch).where(PrintBatch.code == code)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def batches(
    session: AsyncSession, module_id: int | None, overdue_on: date | None
) -> Sequence[PrintBatch]:
    stmt = select(PrintBatch).order_by(PrintBatch.created_at.desc(), PrintBatch.id.desc())
    if module_id is not None:
        stmt = stmt.where(PrintBatch.module_id == module_id)
    if overdue_on is not None:
        stmt = stmt.where(PrintBatch.status != "received", PrintBatch.due_on < overdue_on)
    return (await session.execute(stmt.limit(500))).scalars().all()


async def batch_cards(session: AsyncSession, batch_id: int) -> list[tuple[PrintBatchCard, str]]:
    stmt = (
        select(PrintBatchCard, Credential.status)
        .join(Credential, Credential.credential_id == PrintBatchCard.credential_id)
        .where(PrintBatchCard.batch_id == batch_id)
        .order_by(PrintBatchCard.id)
    )
    return [(c, s) for c, s in (await session.execute(stmt)).all()]


async def card_status(session: AsyncSession, credential_id: str) -> str | None:
    found: str | None = await session.scalar(
        select(Credential.status).where(Credential.credential_id == credential_id)
    )
    return found


async def card_reached(session: AsyncSession, credential_id: str, status: str) -> bool:
    """Whether the card was ever in this status (its events)."""
    found = await session.scalar(
        select(CredentialEvent.id)
        .join(Credential, Credential.id == CredentialEvent.credential_pk)
        .where(Credential.credential_id == credential_id, CredentialEvent.status == status)
        .limit(1)
    )
    return found is not None


async def batch_card(session: AsyncSession, credential_id: str) -> PrintBatchCard | None:
    stmt = (
        select(PrintBatchCard)
        .where(PrintBatchCard.credential_id == credential_id)
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


# --- progress (aggregates only; see progress.py) --------------------------------------------


async def enrolled_by_area(session: AsyncSession) -> dict[tuple[str | None, str | None], int]:
    """Completed enrollments by the person's registered state and municipality, in one pass
    (the snapshot's figure; states are the sums of their municipalities)."""
    stmt = (
        select(Person.address_state, Person.address_municipality, func.count())
        .select_from(Enrollment)
        .join(Person, Person.curp == Enrollment.person_curp)
        .where(Enrollment.status == "completed")
        .group_by(Person.address_state, Person.address_municipality)
    )
    return {(s, m): int(n) for s, m, n in (await session.execute(stmt)).all()}


# Key of the advisory lock one snapshot count holds ("saludPrg" as a signed int64).
_REFRESH_LOCK = int.from_bytes(b"saludPrg", "big", signed=True)


async def try_refresh_lock(session: AsyncSession) -> bool:
    """Whether this transaction may count a snapshot: on PostgreSQL one at a time across
    processes (a transaction-scoped advisory lock, taken without waiting); SQLite has one
    writer anyway."""
    if dialect_name(session) != "postgresql":
        return True
    taken = await session.execute(select(func.pg_try_advisory_xact_lock(_REFRESH_LOCK)))
    return bool(taken.scalar_one())


async def latest_snapshot_id(session: AsyncSession) -> int | None:
    stmt = select(ProgressSnapshot.id).order_by(ProgressSnapshot.taken_at.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def snapshot(session: AsyncSession, snapshot_id: int) -> ProgressSnapshot | None:
    return await session.get(ProgressSnapshot, snapshot_id)


async def latest_snapshot(session: AsyncSession) -> ProgressSnapshot | None:
    stmt = select(ProgressSnapshot).order_by(ProgressSnapshot.taken_at.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def save_snapshot(
    session: AsyncSession, taken_at: datetime, figures: dict[str, Any], keep: int
) -> None:
    """Store a snapshot and drop all but the `keep` newest."""
    session.add(ProgressSnapshot(taken_at=taken_at, figures=figures))
    await session.flush()
    kept = select(ProgressSnapshot.id).order_by(ProgressSnapshot.taken_at.desc()).limit(keep)
    await session.execute(delete(ProgressSnapshot).where(ProgressSnapshot.id.not_in(kept)))


async def appointments_by_state(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Appointments by the module's state and their status."""
    stmt = (
        select(RegistrationModule.state, Appointment.status, func.count())
        .select_from(Appointment)
        .join(RegistrationModule, RegistrationModule.id == Appointment.module_id)
        .group_by(RegistrationModule.state, Appointment.status)
    )
    return {(s, st): int(n) for s, st, n in (await session.execute(stmt)).all()}


async def lapsed_appointments_by_state(session: AsyncSession, today: date) -> dict[str, int]:
    """Appointments still booked for a day before `today`: nobody came."""
    stmt = (
        select(RegistrationModule.state, func.count())
        .select_from(Appointment)
        .join(RegistrationModule, RegistrationModule.id == Appointment.module_id)
        .where(Appointment.status == "booked", Appointment.day < today)
        .group_by(RegistrationModule.state)
    )
    return {s: int(n) for s, n in (await session.execute(stmt)).all()}


async def overdue_batches_by_state(session: AsyncSession, day: date) -> dict[str, int]:
    """Print batches not received at their module by their due day, by the module's state."""
    stmt = (
        select(RegistrationModule.state, func.count())
        .select_from(PrintBatch)
        .join(RegistrationModule, RegistrationModule.id == PrintBatch.module_id)
        .where(PrintBatch.status != "received", PrintBatch.due_on < day)
        .group_by(RegistrationModule.state)
    )
    return {s: int(n) for s, n in (await session.execute(stmt)).all()}


async def cards_by_module_state(
    session: AsyncSession, statuses: Sequence[str]
) -> dict[tuple[str, str], int]:
    """Cards in these statuses by the state of the module where their holder was enrolled
    (a person has one completed enrollment at most, so no card counts twice)."""
    stmt = (
        select(RegistrationModule.state, Credential.status, func.count())
        .select_from(Credential)
        .join(
            Enrollment,
            and_(
                Enrollment.person_curp == Credential.person_curp,
                Enrollment.status == "completed",
            ),
        )
        .join(RegistrationModule, RegistrationModule.id == Enrollment.module_id)
        .where(Credential.status.in_(statuses))
        .group_by(RegistrationModule.state, Credential.status)
    )
    return {(s, st): int(n) for s, st, n in (await session.execute(stmt)).all()}


async def completed_by_module_day(
    session: AsyncSession, start: date, end: date, state: str | None
) -> dict[tuple[int, date], int]:
    """Completed enrollments per module and day of the visit, between two days inclusive."""
    stmt = (
        select(Enrollment.module_id, Enrollment.visit_day, func.count())
        .where(Enrollment.status == "completed", Enrollment.visit_day.between(start, end))
        .group_by(Enrollment.module_id, Enrollment.visit_day)
    )
    if state:
        stmt = stmt.join(RegistrationModule, RegistrationModule.id == Enrollment.module_id).where(
            RegistrationModule.state == state
        )
    return {(m, d): int(n) for m, d, n in (await session.execute(stmt)).all()}
