"""Enrollment at the module: find or register the person, check documents, take the photo and
fingerprints, hold probable duplicates for a supervisor, and on completion issue the
credential (the digital card works at once) and hand over a receipt with the pickup window.

Every step is one transaction and is audited; the operator acts only at their own module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.credentials import service as credentials
from salud.credentials.schemas import IssueReason
from salud.credentials.signing import Signer
from salud.enrollment import biometrics, repository
from salud.enrollment.biometrics import Matcher
from salud.enrollment.booking import check_runs_module, new_folio
from salud.enrollment.documents import LABELS, Document, DocumentKind, checklist
from salud.enrollment.models import (
    Appointment,
    DuplicateReview,
    Enrollment,
    Fingerprint,
    RegistrationModule,
)
from salud.enrollment.schemas import (
    ENROLLMENT_STATUS_WORDS,
    MODULE_STATUS_WORDS,
    DocumentsIn,
    EnrollmentCancel,
    EnrollmentRead,
    EnrollmentStart,
    EnrollmentStatus,
    ExceptionIn,
    ExceptionRead,
    MissingRead,
    OpenEnrollmentRead,
    ReceiptRead,
    in_words,
)
from salud.errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound
from salud.facilities.service import unit_successors
from salud.identity import curp as curp_rules
from salud.identity import guardians, photos
from salud.identity import repository as persons
from salud.identity import service as identity
from salud.identity.models import Person
from salud.identity.schemas import Relationship
from salud.kit.ages import age_on, is_minor
from salud.kit.clock import MEXICO_CITY, today_mx, utcnow
from salud.kit.sealing import Keyring, seal

# The plastic is ready four to six weeks after the visit (printing and shipping in batches).
PICKUP_FROM_DAYS, PICKUP_TO_DAYS = 28, 42
FINGERPRINTS = "fingerprints"


@dataclass(frozen=True, slots=True)
class Issuance:
    """What completing an enrollment needs from the credential domain."""

    signer: Signer
    ring: Keyring
    config: credentials.CredentialConfig


def _fingerprint_aad(curp: str, finger: int) -> bytes:
    return f"fingerprint:{curp}:{finger}".encode()


async def _operator_module(session: AsyncSession, caller: Caller) -> RegistrationModule:
    code = caller.principal.module_code
    if not code:
        raise Forbidden("su cuenta no está asignada a ningún módulo de registro")
    m = await repository.module_by_code(session, code)
    if m is None:
        raise Forbidden(f"el módulo {code} de su cuenta no existe")
    return m


async def _enrollment(
    session: AsyncSession, folio: str, caller: Caller, action: str, permission: Permission
) -> tuple[Enrollment, RegistrationModule]:
    await caller.allow(permission, action, "enrollment", subject_id=folio)
    row = await repository.enrollment_by_folio(session, folio, lock=True)
    if row is None:
        raise NotFound(f"no hay un registro con el folio {folio}")
    m = await repository.module_by_id(session, row.module_id)
    await check_runs_module(caller, m)
    return row, m


def _open_today(row: Enrollment) -> None:
    """An enrollment still to complete, its visit today. Work resumed on a later day (the
    person went home for a document) makes that day the visit: the documents are judged
    against it, as the age and the guardian are, so a proof dated after the first day counts
    and one that has aged past six months since does not."""
    if row.status in ("completed", "cancelled"):
        said = in_words(ENROLLMENT_STATUS_WORDS, row.status)
        raise Conflict(f"el registro {row.folio} ya está {said}: no cambia")
    today = today_mx()
    if row.visit_day < today:
        row.visit_day = today


async def _cancel_row(session: AsyncSession, row: Enrollment, caller: Caller, reason: str) -> None:
    """Cancel an enrollment under way (open or in review) and close its reviews still
    pending as cancelled (nothing is left to decide for it); recorded with the reason."""
    row.status = "cancelled"
    await repository.cancel_pending_reviews(
        session, row.id, utcnow(), caller.actor, f"registro cancelado: {reason}"
    )
    await session.flush()
    await caller.record(
        "enrollment:enrollment:cancel", "enrollment", person_curp=row.person_curp,
        subject_id=row.folio, within=session, detail={"reason": reason},
    )  # fmt: skip


async def cancel(
    session: AsyncSession, folio: str, data: EnrollmentCancel, caller: Caller
) -> EnrollmentRead:
    """Cancel an enrollment under way at the caller's module (a CURP typed by mistake, a
    person who left and will enroll elsewhere, one held in review on an earlier day), with
    the reason: its pending reviews are closed as cancelled, and the CURP may start again at
    any module. Recorded on the person's record."""
    row, m = await _enrollment(
        session, folio, caller, "enrollment:enrollment:cancel", Permission.ENROLL
    )
    if row.status not in ("open", "review"):
        said = in_words(ENROLLMENT_STATUS_WORDS, row.status)
        raise Conflict(
            f"el registro {folio} está {said}: solo se cancela uno abierto o en revisión"
        )
    await _cancel_row(session, row, caller, data.reason)
    return await _read(session, row, m, await _person(session, row.person_curp))


def _full_name(p: Person) -> str:
    return " ".join(x for x in (p.given_names, p.first_surname, p.second_surname) if x)


async def _person(session: AsyncSession, curp: str) -> Person:
    person = await persons.get_by_curp(session, curp, affiliations=False)
    if person is None:
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    return person


@dataclass(frozen=True, slots=True)
class _Captured:
    """What the person has on file for this visit, read once per step."""

    has_photo: bool
    fingers: list[int]


async def _captured(session: AsyncSession, row: Enrollment) -> _Captured:
    """The photo and fingerprints taken during this enrollment: the photo is the version
    this enrollment took (still the current one), the prints those captured since it
    started. One from an abandoned visit elsewhere, or a photo put through the registry's
    API (even during the visit), is not what this module saw, and the card would show it."""
    curp = row.person_curp
    return _Captured(
        await repository.has_photo(session, curp, row.photo_version),
        await repository.fingers_of(session, curp, since=row.started_at),
    )


def _exceptions(row: Enrollment) -> list[ExceptionRead]:
    return [ExceptionRead.model_validate(x) for x in row.exceptions]


def _missing(
    row: Enrollment, person: Person, captured: _Captured, on: date | None = None
) -> list[MissingRead]:
    """What the enrollment lacks, judged on its visit day (or `on`: the day it would be
    resumed)."""
    day = on or row.visit_day
    waived = frozenset(DocumentKind(w) for w in row.waived if w != FINGERPRINTS)
    docs = [Document.model_validate(d) for d in row.documents]
    out = [
        MissingRead(item=m.kind.value, label=LABELS[m.kind], reason=m.reason)
        for m in checklist(person.birth_date, day, docs, waived)
    ]
    if is_minor(person.birth_date, day) and row.guardian_curp is None:
        why = "registre la CURP y el parentesco de quien acompaña"
        out.append(MissingRead(item="guardian", label="Madre, padre o tutor", reason=why))
    if not captured.has_photo:
        out.append(MissingRead(item="photo", label="Fotografía", reason="falta"))
    if FINGERPRINTS not in row.waived:
        need = biometrics.required_fingers(age_on(person.birth_date, day))
        lacking = [f for f in need if f not in captured.fingers]
        if lacking:
            why = f"faltan los dedos {', '.join(map(str, lacking))}"
            out.append(MissingRead(item=FINGERPRINTS, label="Huellas dactilares", reason=why))
    if row.status == "review":
        out.append(MissingRead(item="duplicate_review", label="Revisión de posible duplicado",
                               reason="un supervisor debe resolverla"))  # fmt: skip
    return out


async def _read(
    session: AsyncSession, row: Enrollment, m: RegistrationModule, person: Person | None = None
) -> EnrollmentRead:
    person = person or await _person(session, row.person_curp)
    captured = await _captured(session, row)
    # One still under way from an earlier day is judged as of today, the day it would be
    # resumed (as the desk's list judges it): its page and the list never disagree.
    under_way = row.status not in ("completed", "cancelled")
    day = max(row.visit_day, today_mx()) if under_way else row.visit_day
    age = age_on(person.birth_date, day)
    exceptions = _exceptions(row)
    last = exceptions[-1] if exceptions else None
    return EnrollmentRead(
        folio=row.folio, curp=row.person_curp, full_name=_full_name(person),
        birth_date=person.birth_date, minor=is_minor(person.birth_date, day),
        module_code=m.code, operator=row.operator, status=EnrollmentStatus(row.status),
        visit_day=row.visit_day, documents=[Document.model_validate(d) for d in row.documents],
        waived=row.waived, exceptions=exceptions,
        exception_reason=last.reason if last else None, exception_by=last.by if last else None,
        guardian_curp=row.guardian_curp,
        guardian_relationship=Relationship(row.guardian_relationship)
        if row.guardian_relationship else None,
        has_photo=captured.has_photo, fingers=captured.fingers,
        fingers_required=list(biometrics.required_fingers(age)),
        missing=_missing(row, person, captured, day) if under_way else [],
        credential_id=row.credential_id, pickup_from=row.pickup_from, pickup_to=row.pickup_to,
        started_at=row.started_at, completed_at=row.completed_at,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Started:
    """What starting gave: a new enrollment, or the one under way at this module, resumed."""

    enrollment: EnrollmentRead
    resumed: bool


async def start(session: AsyncSession, data: EnrollmentStart, caller: Caller) -> EnrollmentRead:
    """Open an enrollment at the operator's module (or resume the one under way there): see
    `start_or_resume`."""
    return (await start_or_resume(session, data, caller)).enrollment


async def start_or_resume(session: AsyncSession, data: EnrollmentStart, caller: Caller) -> Started:
    """Open an enrollment at the operator's module: the person is found by CURP or registered
    from the data given; probable duplicates go to the supervisors' review queue (but for a
    pair a supervisor already judged two people).

    The CURP's enrollment under way at this module (open or in review, of any day) is
    resumed, not opened again: its visit becomes today, and what it has recorded is judged
    against today (`_resume`). One under way at another module since an earlier day was
    abandoned there: it is cancelled with its pending reviews. A CURP a supervisor judged the
    same person as another (its latest decided review) is refused until the registry is
    corrected."""
    identity.check_curp(data.curp)
    await caller.allow(
        Permission.ENROLL, "enrollment:enrollment:start", "enrollment", person_curp=data.curp
    )
    m = await _operator_module(session, caller)
    if m.status != "open":
        said = in_words(MODULE_STATUS_WORDS, m.status)
        raise Conflict(f"el módulo {m.code} no está abierto (está {said})")
    person = await persons.get_by_curp(session, data.curp)
    if person is None:
        if data.person is None:
            raise InvalidInput.on("person", "la CURP no está en el padrón: capture los datos")
        if data.person.curp != data.curp:
            raise InvalidInput.on("person.curp", "no es la CURP del registro")
        # The names were checked against the CURP with the rest of PersonCreate.
        await identity.register(session, data.person, caller, units=unit_successors)
        person = await _person(session, data.curp)
    elif data.person is not None:
        raise Conflict(
            "la persona ya está en el padrón: no vuelva a capturar sus datos (corríjalos con una "
            "rectificación)", [FieldProblem("person", "ya registrada")],
        )  # fmt: skip
    decided = await repository.latest_decided_review(session, data.curp)
    if decided is not None and decided.status == "duplicate":
        # Two CURPs of one person: a card under this one would be the person's second. The
        # registry is corrected first (RENAPO); undoing the decision is not the desk's.
        raise Conflict(
            f"la revisión {decided.id} resolvió que esta CURP es la misma persona que "
            f"{decided.candidate_curp}: no se registra hasta que se corrija el padrón (RENAPO)",
            [FieldProblem("curp", f"misma persona que {decided.candidate_curp}")],
        )  # fmt: skip
    # Locked: a completion or an exception at the other module may be under way; the lock
    # waits for it, and the status is judged as it committed.
    live = await repository.live_enrollment_for(session, data.curp, lock=True)
    if live is not None and live.status in ("open", "review"):
        if live.module_id == m.id:  # the person came back: the same enrollment goes on
            return Started(await _resume(session, live, m, person, data, caller), True)
        if live.visit_day < today_mx():
            # Left under way on an earlier day at another module (the person never came
            # back there): it does not lock them out of every other one. Cancelled, with
            # its pending reviews, and recorded as such.
            await _cancel_row(
                session, live, caller, f"abandonado desde {live.visit_day.isoformat()}"
            )
            live = None
    if live is not None:
        if live.status == "completed":
            raise Conflict(f"esta CURP ya fue credencializada (folio {live.folio})")
        raise Conflict(f"esta CURP tiene un registro en curso en otro módulo (folio {live.folio})")
    appointment = await _kept_appointment(session, data, m)
    now, today = utcnow(), today_mx()
    distinct = await repository.decided_distinct(session, data.curp, either_way=True)
    duplicates = [c for c in await repository.probable_duplicates(session, person)
                  if c not in distinct]  # fmt: skip
    row = Enrollment(
        folio=new_folio("R", 10), person_curp=data.curp, module_id=m.id,
        appointment_id=appointment.id if appointment else None, operator=caller.actor,
        status="review" if duplicates else "open", visit_day=today, documents=[], waived=[],
        exceptions=[], guardian_curp=None, guardian_relationship=None, started_at=now,
        completed_at=None, credential_id=None, pickup_from=None, pickup_to=None,
        photo_version=None,
    )  # fmt: skip
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # another operator started this CURP at the same moment
        raise Conflict("esta CURP ya tiene un registro en curso") from None
    for other in duplicates:
        session.add(DuplicateReview(
            enrollment_id=row.id, person_curp=data.curp, candidate_curp=other,
            reason="mismo nombre, fecha y entidad de nacimiento con otra CURP",
            status="pending", created_at=now, decided_by=None, decided_at=None, note=None,
        ))  # fmt: skip
    await session.flush()
    await caller.record(
        "enrollment:enrollment:start", "enrollment", person_curp=data.curp, subject_id=row.folio,
        within=session, detail={"module": m.code, "duplicates": len(duplicates)},
    )  # fmt: skip
    return Started(await _read(session, row, m, person), False)


async def _kept_appointment(
    session: AsyncSession, data: EnrollmentStart, m: RegistrationModule
) -> Appointment | None:
    """The person's booking for today at this module, marked kept (if it is still booked at
    this moment); a walk-in, or a booking for another day or module, gives None (that one is
    left as it is)."""
    appointment = await repository.booked_for(session, data.curp)
    if data.appointment_folio and (
        appointment is None or appointment.folio != data.appointment_folio
    ):
        raise InvalidInput.on("appointment_folio", "no es una cita vigente de esta CURP")
    now = utcnow()
    if (
        appointment is not None
        and appointment.module_id == m.id
        and appointment.day == today_mx()
        and await repository.settle_appointment(session, appointment.id, "kept", now)
    ):
        appointment.status, appointment.changed_at = "kept", now  # as it is now stored
        return appointment
    return None


async def _resume(
    session: AsyncSession,
    row: Enrollment,
    m: RegistrationModule,
    person: Person,
    data: EnrollmentStart,
    caller: Caller,
) -> EnrollmentRead:
    """The person came back to the module where their enrollment is under way. The visit
    becomes today: the documents recorded stay recorded but are judged against today (a
    proof of address that has aged past six months since is missing again; the age, and so
    whether the minor's documents and guardian are asked, is today's). The photo and prints
    this enrollment took still count, as do the exceptions approved (each with its day). A
    booking for today here is kept.

    The one resuming becomes the enrollment's operator (the one doing it now): four eyes
    judges against them, so a supervisor who carries on an operator's enrollment approves
    none of its exceptions and decides none of its reviews."""
    since, before = row.visit_day, row.operator
    row.operator = caller.actor
    appointment = await _kept_appointment(session, data, m)
    if appointment is not None and row.appointment_id is None:
        row.appointment_id = appointment.id
    if row.visit_day < today_mx():
        row.visit_day = today_mx()
    await session.flush()
    await caller.record(  # the person reads it as a start ("inició su registro"), resumed
        "enrollment:enrollment:start", "enrollment", person_curp=row.person_curp,
        subject_id=row.folio, within=session,
        detail={"module": m.code, "resumed": True, "since": since.isoformat()}
        | ({"operator_was": before} if before != caller.actor else {}),
    )  # fmt: skip
    return await _read(session, row, m, person)


async def open_enrollments(
    session: AsyncSession, caller: Caller, limit: int = 200
) -> list[OpenEnrollmentRead]:
    """The enrollments under way at the caller's module (open or in review, of any day), the
    oldest first, each with what it is missing: the desk's list to resume them. Every person
    listed is recorded."""
    await caller.allow(Permission.ENROLL, "enrollment:enrollment:read", "enrollment")
    m = await _operator_module(session, caller)
    found = await repository.open_enrollments(session, m.id, limit)
    photos_now = await repository.current_photo_versions(session, [e.person_curp for e, _ in found])
    fingers = await repository.fingers_since_start(session, [e.id for e, _ in found])
    out, today = [], today_mx()
    for row, person in found:
        version = photos_now.get(row.person_curp)
        captured = _Captured(
            version is not None and version == row.photo_version, fingers.get(row.id, [])
        )
        out.append(OpenEnrollmentRead(
            folio=row.folio, curp=row.person_curp, full_name=_full_name(person),
            status=EnrollmentStatus(row.status),
            started_on=row.started_at.astimezone(MEXICO_CITY).date(), visit_day=row.visit_day,
            missing=[x.label for x in _missing(row, person, captured, today)],
        ))  # fmt: skip
    # Each person listed reads it as a look at their enrollment ("consultó su registro").
    await caller.record_persons("enrollment:enrollment:read", [e.person_curp for e, _ in found])
    return out


async def get(session: AsyncSession, folio: str, caller: Caller) -> EnrollmentRead:
    row, m = await _enrollment(
        session, folio, caller, "enrollment:enrollment:read", Permission.ENROLL
    )
    await caller.record(
        "enrollment:enrollment:read", "enrollment", person_curp=row.person_curp, subject_id=folio
    )
    return await _read(session, row, m)


async def set_documents(
    session: AsyncSession, folio: str, data: DocumentsIn, caller: Caller
) -> EnrollmentRead:
    row, m = await _enrollment(
        session, folio, caller, "enrollment:documents:update", Permission.ENROLL
    )
    _open_today(row)
    today = today_mx()
    for i, doc in enumerate(data.documents):
        if doc.issued_on is not None and doc.issued_on > today:
            raise InvalidInput.on(f"documents[{i}].issued_on", "la fecha está en el futuro")
    if data.guardian_curp is not None:
        identity.check_curp(data.guardian_curp, "guardian_curp")
        if data.guardian_curp == row.person_curp:
            raise InvalidInput.on("guardian_curp", "es la CURP de la misma persona")
        guardian_birth = curp_rules.parse(data.guardian_curp).birth_date
        if is_minor(guardian_birth, today):
            raise InvalidInput.on(
                "guardian_curp", "quien acompaña a un menor debe ser mayor de edad"
            )
    row.documents = [d.model_dump(mode="json") for d in data.documents]
    row.guardian_curp = data.guardian_curp
    row.guardian_relationship = (
        data.guardian_relationship.value if data.guardian_relationship else None
    )
    await session.flush()
    await caller.record(
        "enrollment:documents:update", "enrollment", person_curp=row.person_curp,
        subject_id=folio, within=session,
        detail={"documents": [d.kind.value for d in data.documents],
                "guardian": data.guardian_curp is not None},
    )  # fmt: skip
    return await _read(session, row, m)


async def put_photo(
    session: AsyncSession, ring: Keyring, folio: str, image: bytes, caller: Caller
) -> EnrollmentRead:
    row, m = await _enrollment(session, folio, caller, "enrollment:photo:update", Permission.ENROLL)
    _open_today(row)
    # The version taken here is the one that counts (a later photo through the registry
    # replaces it, and then the enrollment asks for its photo again).
    row.photo_version = await photos.put_photo(session, ring, row.person_curp, image, caller)
    await session.flush()
    return await _read(session, row, m)


async def put_fingerprint(
    session: AsyncSession, ring: Keyring, folio: str, finger: int, image: bytes, caller: Caller
) -> EnrollmentRead:
    row, m = await _enrollment(
        session, folio, caller, "enrollment:fingerprint:update", Permission.ENROLL
    )
    _open_today(row)
    checked = biometrics.check_fingerprint(image, finger)
    sealed = seal(checked.data, ring, _fingerprint_aad(row.person_curp, finger))
    now = utcnow()
    existing = await repository.fingerprint(session, row.person_curp, finger)
    if existing is None:
        session.add(Fingerprint(
            person_curp=row.person_curp, finger=finger, image_sealed=sealed,
            media_type=checked.media_type, width=checked.width, height=checked.height,
            quality=checked.quality, captured_at=now, captured_by=caller.actor,
        ))  # fmt: skip
    else:
        existing.image_sealed, existing.media_type = sealed, checked.media_type
        existing.width, existing.height, existing.quality = (
            checked.width,
            checked.height,
            checked.quality,
        )
        existing.captured_at, existing.captured_by = now, caller.actor
    await session.flush()
    await caller.record(
        "enrollment:fingerprint:update", "fingerprint", person_curp=row.person_curp,
        subject_id=str(finger), within=session, detail={"quality": checked.quality},
    )  # fmt: skip
    return await _read(session, row, m)


async def approve_exception(
    session: AsyncSession, folio: str, data: ExceptionIn, caller: Caller
) -> EnrollmentRead:
    """A supervisor excuses documents (or fingerprints) with a recorded reason. Four eyes:
    never the supervisor who is doing the enrollment (its operator), or one person alone
    could issue a card with nothing checked. Every exception is kept (who, when, why, what);
    `waived` is their union."""
    row, m = await _enrollment(
        session, folio, caller, "enrollment:exception:approve", Permission.ENROLLMENT_APPROVE
    )
    if row.operator == caller.actor:
        await caller.record(
            "enrollment:exception:approve", "enrollment", person_curp=row.person_curp,
            subject_id=folio, outcome="denied", detail={"why": "own_enrollment"},
        )  # fmt: skip
        raise Forbidden("una excepción la aprueba un supervisor distinto de quien hace el registro")
    _open_today(row)
    waived = {w.value for w in data.waive} | ({FINGERPRINTS} if data.waive_fingerprints else set())
    row.waived = sorted(set(row.waived) | waived)
    entry = {"by": caller.actor, "at": utcnow().isoformat(), "reason": data.reason,
             "waived": sorted(waived)}  # fmt: skip
    row.exceptions = [*row.exceptions, entry]  # a new list: the JSON column sees the change
    await session.flush()
    await caller.record(
        "enrollment:exception:approve", "enrollment", person_curp=row.person_curp,
        subject_id=folio, within=session,
        detail={"waived": sorted(waived), "reason": data.reason},
    )  # fmt: skip
    return await _read(session, row, m)


async def complete(
    session: AsyncSession, issuance: Issuance, matcher: Matcher, folio: str, caller: Caller
) -> ReceiptRead | EnrollmentRead:
    """Close the enrollment: nothing may be missing; the credential is issued with the digital
    card active at once; the receipt gives the pickup window at this module. When the
    biometric matcher finds the prints enrolled under another CURP, the enrollment goes to
    the supervisors' review instead, and its state (status `review`) is returned."""
    row, m = await _enrollment(
        session, folio, caller, "enrollment:enrollment:complete", Permission.ENROLL
    )
    _open_today(row)
    approved = [x for x in _exceptions(row) if x.by == caller.actor]
    if approved:
        # Four eyes: whoever excused something on this enrollment does not also close it
        # (a supervisor who approved its exceptions, then carried it on, did it alone).
        await caller.record(
            "enrollment:enrollment:complete", "enrollment", person_curp=row.person_curp,
            subject_id=folio, outcome="denied", detail={"why": "own_exception"},
        )  # fmt: skip
        raise Forbidden(
            "usted aprobó una excepción de este registro: lo concluye otra persona (quien "
            "aprueba una excepción no concluye el registro)"
        )
    person = await _person(session, row.person_curp)
    missing = _missing(row, person, await _captured(session, row))
    if missing:
        raise Conflict(
            "el registro no puede concluir: "
            + "; ".join(f"{x.label}: {x.reason}" for x in missing),
            [FieldProblem(x.item, x.reason) for x in missing],
        )
    prints = {
        f.finger: f.image_sealed for f in await repository.fingerprints(session, row.person_curp)
    }
    # A match a supervisor already judged another person is not asked again (it was, at
    # every completion, so the enrollment could never end).
    distinct = await repository.decided_distinct(session, row.person_curp)
    matches = [c for c in matcher.candidates(row.person_curp, prints) if c not in distinct]
    if matches:
        now = utcnow()
        for other in matches:
            session.add(DuplicateReview(
                enrollment_id=row.id, person_curp=row.person_curp, candidate_curp=other,
                reason=f"coincidencia biométrica ({matcher.name})", status="pending",
                created_at=now, decided_by=None, decided_at=None, note=None,
            ))  # fmt: skip
        row.status = "review"
        await session.flush()
        await caller.record(
            "enrollment:enrollment:review", "enrollment", person_curp=row.person_curp,
            subject_id=folio, within=session, detail={"biometric_matches": len(matches)},
        )  # fmt: skip
        # Returned, not raised: the reviews must be committed (an error would roll them back);
        # the adapter answers 409 with this state.
        return await _read(session, row, m, person)
    # The guardian's link first: it locks the minor's link rows before the audit chain's lock
    # (taken by the first entry written in this transaction), the order in which linking and
    # ending a link at the registry take them, so the two never wait on each other.
    # Only an adult whose ID was checked is linked: the link hands over the minor's plastic
    # and digital card. With guardian_id excused, a supervisor links them later, after
    # checking the documents (POST /api/v1/persons/{curp}/guardians).
    minor = is_minor(person.birth_date, row.visit_day)
    id_checked = DocumentKind.GUARDIAN_ID.value not in row.waived
    linked = False
    if minor and id_checked and row.guardian_curp and row.guardian_relationship:
        await guardians.link(  # the adult who came along
            session, row.person_curp, row.guardian_curp,
            Relationship(row.guardian_relationship), f"registro {folio}", caller,
        )  # fmt: skip
        linked = True
    card = await credentials.issue(
        session, issuance.signer, issuance.ring, issuance.config, row.person_curp,
        IssueReason.FIRST, caller, enrolled=True,
    )  # fmt: skip
    now = utcnow()
    row.status, row.completed_at, row.credential_id = "completed", now, card.credential_id
    # A booking still held for the day this enrollment started (at another module) or a later
    # day is of no more use: it is cancelled and its place goes back to the others (the
    # person was enrolling, whatever day they came back to finish). One whose day was before
    # is left as it is: the person did not come that day, and it counts as a no-show. (A
    # booking for that day at this module was marked kept when the enrollment started.)
    later = await repository.booked_for(session, row.person_curp)
    started_on = row.started_at.astimezone(MEXICO_CITY).date()
    if (
        later is not None
        and later.day >= started_on
        and await repository.settle_appointment(session, later.id, "cancelled", now)
    ):
        await repository.free_place(session, later.module_id, later.day)
        await caller.record(
            "enrollment:appointment:cancel", "appointment", person_curp=row.person_curp,
            subject_id=later.folio, within=session, detail={"why": f"credencializada ({folio})"},
        )  # fmt: skip
    row.pickup_from = row.visit_day + timedelta(days=PICKUP_FROM_DAYS)
    row.pickup_to = row.visit_day + timedelta(days=PICKUP_TO_DAYS)
    await session.flush()
    await caller.record(
        "enrollment:enrollment:complete", "enrollment", person_curp=row.person_curp,
        subject_id=folio, within=session,
        detail={"credential": card.credential_id, "guardian_linked": linked} if minor
        else {"credential": card.credential_id},
    )  # fmt: skip
    return _receipt(row, m, person, issuance.config)


def _receipt(
    row: Enrollment, m: RegistrationModule, person: Person, config: credentials.CredentialConfig
) -> ReceiptRead:
    assert row.credential_id
    assert row.completed_at
    assert row.pickup_from
    assert row.pickup_to
    return ReceiptRead(
        folio=row.folio, curp=row.person_curp, full_name=_full_name(person), module_code=m.code,
        module_name=m.name, module_address=m.address, opens_at=m.opens_at, closes_at=m.closes_at,
        credential_id=row.credential_id,
        digital_card_url=f"{config.public_base_url.rstrip('/')}/credencial/",
        pickup_from=row.pickup_from, pickup_to=row.pickup_to, completed_at=row.completed_at,
    )  # fmt: skip


async def receipt(
    session: AsyncSession, config: credentials.CredentialConfig, folio: str, caller: Caller
) -> ReceiptRead:
    row, m = await _enrollment(session, folio, caller, "enrollment:receipt:read", Permission.ENROLL)
    if row.status != "completed":
        raise Conflict("el registro aún no concluye: no hay comprobante")
    person = await _person(session, row.person_curp)
    await caller.record(
        "enrollment:receipt:read", "enrollment", person_curp=row.person_curp, subject_id=folio
    )
    return _receipt(row, m, person, config)
