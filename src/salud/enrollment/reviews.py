"""The supervisors' queue of probable duplicates: same names, birth date and state under
another CURP (found when an enrollment starts) or a biometric match (at completion). Each
pair is decided once: two people (the enrollment goes on) or the same person (it is
cancelled; both registry records stay for the RENAPO correction, and the CURP cannot start
again until then: service.start_or_resume). Four eyes: a supervisor never decides the
reviews of an enrollment they are doing themselves."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.permissions import Permission, Role
from salud.enrollment import repository
from salud.enrollment.booking import check_runs_module
from salud.enrollment.models import DuplicateReview, Enrollment
from salud.enrollment.schemas import (
    REVIEW_STATUS_WORDS,
    DuplicateDecision,
    DuplicateReviewRead,
    in_words,
)
from salud.errors import Conflict, Forbidden, NotFound
from salud.kit.clock import utcnow


def _review_read(r: DuplicateReview, folio: str) -> DuplicateReviewRead:
    return DuplicateReviewRead(
        id=r.id, enrollment_folio=folio, person_curp=r.person_curp,
        candidate_curp=r.candidate_curp, reason=r.reason, status=r.status,
        created_at=r.created_at, decided_by=r.decided_by, note=r.note,
    )  # fmt: skip


async def list_reviews(
    session: AsyncSession, caller: Caller, status: str | None = "pending"
) -> list[DuplicateReviewRead]:
    await caller.allow(Permission.ENROLLMENT_APPROVE, "enrollment:review:list", "review")
    p = caller.principal
    supervised = p.username if p.role is Role.SUPERVISOR else None
    module_ids = await repository.modules_run_by(session, p.module_code, supervised)
    if not module_ids:
        raise Forbidden("su cuenta no está asignada a ningún módulo de registro")
    found = await repository.reviews(session, status, module_ids)
    curps = {c for r, _ in found for c in (r.person_curp, r.candidate_curp)}
    await caller.record_persons("enrollment:review:list", sorted(curps))
    return [_review_read(r, f) for r, f in found]


async def decide_review(
    session: AsyncSession, review_id: int, data: DuplicateDecision, caller: Caller
) -> DuplicateReviewRead:
    """`distinct`: two people (the enrollment goes on when no review is left pending);
    `duplicate`: the same person under two CURPs (the enrollment is cancelled; the registry
    keeps both records for the RENAPO correction, noted in the review)."""
    await caller.allow(Permission.ENROLLMENT_APPROVE, "enrollment:review:decide", "review")
    review = await repository.review_by_id(session, review_id)
    if review is None:
        raise NotFound("no hay esa revisión")
    if review.status != "pending":
        said = in_words(REVIEW_STATUS_WORDS, review.status)
        raise Conflict(f"la revisión ya no está pendiente ({said})")
    row = await session.get(Enrollment, review.enrollment_id, with_for_update=True)
    assert row is not None
    await check_runs_module(caller, await repository.module_by_id(session, row.module_id))
    if row.operator == caller.actor:
        await caller.record(
            "enrollment:review:decide", "review", person_curp=review.person_curp,
            subject_id=str(review_id), outcome="denied", detail={"why": "own_enrollment"},
        )  # fmt: skip
        raise Forbidden("una revisión la resuelve un supervisor distinto de quien hace el registro")
    if row.status == "cancelled":  # another review found the duplicate: this one is moot
        raise Conflict(f"el registro {row.folio} se canceló: la revisión ya no aplica")
    now = utcnow()
    review.status, review.note = data.decision, data.note
    review.decided_by, review.decided_at = caller.actor, now
    await session.flush()
    if data.decision == "duplicate":
        row.status = "cancelled"
        # Nothing is left to decide for this enrollment: its other reviews are closed.
        await repository.cancel_pending_reviews(
            session, row.id, now, caller.actor, f"registro cancelado: misma persona que "
            f"{review.candidate_curp} (revisión {review_id})",
        )  # fmt: skip
    elif row.status == "review" and await repository.pending_reviews(session, row.id) == 0:
        row.status = "open"
    await session.flush()
    await caller.record(
        "enrollment:review:decide", "review", person_curp=review.person_curp,
        subject_id=str(review_id), within=session,
        detail={"decision": data.decision, "candidate": review.candidate_curp},
    )  # fmt: skip
    return _review_read(review, row.folio)
