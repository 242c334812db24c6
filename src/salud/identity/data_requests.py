"""Data-protection requests (derechos ARCO) about a person's registry data.

The person files a request (signed in as themselves: no staff role holds
`data-request:file`); the privacy office answers within 20 working days (LGPDPPSO art. 51).
A granted rectification is applied as a new version of the person, never as an overwrite;
the request keeps the version it produced."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.errors import Conflict, FieldProblem, InvalidInput, NotFound, located
from salud.identity import service
from salud.identity.models import DataRequest
from salud.identity.schemas import (
    DataRequestAnswer,
    DataRequestCreate,
    DataRequestRead,
    PersonUpdate,
)
from salud.kit.clock import today_mx, utcnow
from salud.kit.workdays import add_workdays, received_on
from salud.storage import locks

ANSWER_WORKDAYS = 20


def _read(r: DataRequest) -> DataRequestRead:
    return DataRequestRead(
        folio=r.folio,
        curp=r.person_curp,
        kind=r.kind,
        description=r.description,
        requested_changes=r.requested_changes,
        filed_at=r.filed_at,
        due_on=r.due_on,
        overdue=r.status == "received" and r.due_on < today_mx(),
        status=r.status,
        answer=r.answer,
        answered_at=r.answered_at,
        resulting_version=r.resulting_version,
    )


async def file(
    session: AsyncSession,
    curp: str,
    data: DataRequestCreate,
    caller: Caller,
    *,
    units: service.UnitLookup | None = None,
) -> DataRequestRead:
    """File a request. `units` checks a rectified assigned unit against the CLUES catalog
    (without it, asking for one is refused)."""
    service.check_curp(curp)
    await caller.allow(
        Permission.DATA_REQUEST_FILE, "identity:data-request:file", "person", person_curp=curp
    )
    changes = data.requested_changes
    if changes is not None and "assigned_clues" in changes.model_fields_set:
        await service.check_unit(
            session, changes.assigned_clues, units, "requested_changes.assigned_clues"
        )
    await service.get_version(session, curp)  # the person must exist
    now = utcnow()
    request = DataRequest(
        folio="",
        person_curp=curp,
        kind=data.kind.value,
        description=data.description,
        requested_changes=(
            data.requested_changes.model_dump(mode="json", exclude_unset=True)
            if data.requested_changes
            else None
        ),
        filed_at=now,
        filed_by=caller.actor,
        due_on=add_workdays(received_on(today_mx()), ANSWER_WORKDAYS),
        status="received",
    )
    session.add(request)
    await session.flush()
    request.folio = f"ARCO-{today_mx().year}-{request.id:07d}"  # the year in Mexico
    await session.flush()
    await caller.record(
        "identity:data-request:file",
        "data_request",
        person_curp=curp,
        subject_id=request.folio,
        within=session,
    )
    return _read(request)


async def of_person(session: AsyncSession, curp: str, caller: Caller) -> list[DataRequestRead]:
    service.check_curp(curp)
    await caller.allow(
        Permission.DATA_REQUEST_FILE, "identity:data-request:read", "person", person_curp=curp
    )
    rows = await session.execute(
        select(DataRequest).where(DataRequest.person_curp == curp).order_by(DataRequest.id)
    )
    found = [_read(r) for r in rows.scalars()]
    await caller.record("identity:data-request:read", "data_request", person_curp=curp)
    return found


async def pending(
    session: AsyncSession,
    caller: Caller,
    *,
    overdue_only: bool,
    limit: int,
    status: str = "received",
    offset: int = 0,
) -> list[DataRequestRead]:
    """The privacy office's list: by default the requests still to answer, the first due
    first; `status` another state (or "all"), paged by `offset`."""
    await caller.allow(Permission.DATA_REQUEST_MANAGE, "identity:data-request:list", "data_request")
    stmt = select(DataRequest)
    if status != "all":
        stmt = stmt.where(DataRequest.status == status)
    if overdue_only:
        stmt = stmt.where(DataRequest.status == "received", DataRequest.due_on < today_mx())
    rows = await session.execute(
        stmt.order_by(DataRequest.due_on, DataRequest.id).offset(offset).limit(limit)
    )
    found = [_read(r) for r in rows.scalars()]
    await caller.record_persons("identity:data-request:list", (r.curp for r in found))
    return found


async def by_folio(session: AsyncSession, folio: str, caller: Caller) -> DataRequestRead:
    """One request, for the privacy office tracking it (answered ones too)."""
    await caller.allow(Permission.DATA_REQUEST_MANAGE, "identity:data-request:read", "data_request")
    request = await session.scalar(select(DataRequest).where(DataRequest.folio == folio))
    if request is None:
        raise NotFound("no existe una solicitud con ese folio")
    await caller.record(
        "identity:data-request:read", "data_request", person_curp=request.person_curp,
        subject_id=folio,
    )  # fmt: skip
    return _read(request)


def _outdated(folio: str, problems: list[FieldProblem]) -> Conflict:
    """The stored rectification no longer passes today's checks (a catalog changed since it
    was filed, a unit passed to another key): the office cannot grant it as it is."""
    named = [
        FieldProblem(
            "requested_changes" if p.field in ("", "body") else f"requested_changes.{p.field}",
            p.reason,
        )
        for p in problems
    ]
    said = "; ".join(f"{p.field}: {p.reason}" for p in named)
    return Conflict(
        f"la rectificación de {folio} ya no puede aplicarse como se pidió ({said}): "
        "respóndala como improcedente (denied), explicando por qué, o pida una nueva",
        named,
    )


async def answer(
    session: AsyncSession,
    folio: str,
    data: DataRequestAnswer,
    caller: Caller,
    *,
    units: service.UnitLookup | None = None,
) -> DataRequestRead:
    """Answer a request; a granted rectification becomes a new version of the person, checked
    as any change is (`units`: the CLUES catalog). One that no longer passes is a 409 naming
    the field: nothing changes, and the office may still deny it."""
    await caller.allow(
        Permission.DATA_REQUEST_MANAGE, "identity:data-request:answer", "data_request"
    )
    # One answer per request: on SQLite, which has no row locks, the database's write lock
    # before the read (a read before the first write would see the request unanswered).
    await locks.hold(session, f"data-request:{folio}", "data_requests")
    request = (
        await session.execute(
            select(DataRequest).where(DataRequest.folio == folio).with_for_update()
        )
    ).scalar_one_or_none()
    if request is None:
        raise NotFound("no existe una solicitud con ese folio")
    if request.status != "received":
        raise Conflict(f"la solicitud ya fue respondida ({request.status})")
    version: int | None = None
    if data.decision == "granted" and request.kind == "rectification":
        changes: dict[str, Any] = request.requested_changes or {}
        if not changes:
            raise InvalidInput.on("decision", "la solicitud no indica qué rectificar")
        try:
            patch = PersonUpdate.model_validate({**changes, "reason": f"rectificación {folio}"})
        except ValidationError as exc:
            raise _outdated(folio, [
                located(list(e["loc"]), str(e["msg"]), e["type"], e.get("ctx"))
                for e in exc.errors()
            ]) from None  # fmt: skip
        # The person locked first: a change at the same moment waits, rather than make the
        # rectification fail with a 412 about an If-Match the office never sent.
        current = await service.get_version(session, request.person_curp, for_update=True)
        try:
            person = await service.apply_change(
                session, request.person_curp, patch, current, caller, units=units
            )
        except InvalidInput as exc:  # the names, the donor's date, the unit: as stored
            raise _outdated(folio, exc.problems) from None
        version = person.version
    request.status = data.decision
    request.answer = data.answer
    request.answered_at = utcnow()
    request.answered_by = caller.actor
    request.resulting_version = version
    await session.flush()
    await caller.record(
        "identity:data-request:answer",
        "data_request",
        person_curp=request.person_curp,
        subject_id=folio,
        detail={"decision": data.decision, "version": version},
        within=session,
    )
    return _read(request)
