"""The registration module's print batches and card delivery (Spanish; operators and
supervisors): the batch list, a new batch of the module's issued cards, its print file, the
shipped and received steps, and delivery after an identity check. Thin: each handler checks
the session and the CSRF token and calls the services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from salud.enrollment import printing, service
from salud.enrollment.schemas import (
    BatchCreate,
    DeliveryIn,
    IdentityCheck,
)
from salud.errors import DomainError
from salud.web import csrf
from salud.web.forms import back_to, notice, reason_of, staff_gate
from salud.web.pages import (
    ReadSession,
    WriteSession,
    _caller,
    _check_csrf,
    _page,
)

router = APIRouter(include_in_schema=False)

# --- print batches and delivery -------------------------------------------------------------


@router.get("/modulo/lotes", response_class=HTMLResponse)
async def batches(request: Request, session: ReadSession) -> Response:
    principal, answer = staff_gate(request)
    if answer is not None:
        return answer
    assert principal is not None
    caller = _caller(request, "impresion")
    found = await printing.list_batches(session, caller, principal.module_code, False)
    return _page(request, "batches.html", {"principal": principal, "batches": found,
                                           "notice": notice(request)})  # fmt: skip


@router.post("/modulo/lotes")
async def create_batch(
    request: Request,
    session: WriteSession,
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    caller = _caller(request, "impresion")
    try:
        made = await printing.create_batch(
            session, BatchCreate(module_code=caller.principal.module_code or "X00"), caller
        )
    except (DomainError, ValidationError) as exc:
        await session.rollback()
        return back_to(request, "/modulo/lotes", reason_of(exc))
    return back_to(request, f"/modulo/lotes/{made.code}", f"Lote {made.code} formado.")


@router.get("/modulo/lotes/{code}", response_class=HTMLResponse)
async def batch_page(
    request: Request,
    code: str,
    session: WriteSession,
) -> Response:
    principal, answer = staff_gate(request)
    if answer is not None:
        return answer
    found = await printing.get_batch(session, code, _caller(request, "impresion"))
    context = {"principal": principal, "b": found, "notice": notice(request),
               "checks": list(IdentityCheck)}  # fmt: skip
    return _page(request, "batch.html", context)


@router.post("/modulo/lotes/{code}/archivo")
async def batch_file(
    request: Request,
    code: str,
    session: WriteSession,
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    caller = _caller(request, "impresion")
    state = request.app.state
    issuance = service.Issuance(state.signer, state.keyring, state.credential_config)
    try:
        pdf = await printing.print_file(session, issuance, code, caller)
    except DomainError as exc:
        await session.rollback()
        return back_to(request, f"/modulo/lotes/{code}", reason_of(exc))
    disposition = f'attachment; filename="{code}.pdf"'
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": disposition})  # fmt: skip


@router.post("/modulo/lotes/{code}/estado")
async def batch_step(
    request: Request,
    code: str,
    session: WriteSession,
    status: Annotated[str, Form(max_length=10)],
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    caller = _caller(request, "impresion")
    try:
        await printing.advance(session, code, status, caller)
    except DomainError as exc:
        await session.rollback()
        return back_to(request, f"/modulo/lotes/{code}", reason_of(exc))
    said = {"shipped": "Lote enviado.", "received": "Lote recibido: se avisó a las personas."}
    return back_to(request, f"/modulo/lotes/{code}", said.get(status, ""))


@router.post("/modulo/lotes/{code}/entrega")
async def deliver(
    request: Request,
    code: str,
    session: WriteSession,
    credential_id: Annotated[str, Form(max_length=32)],
    identity_check: Annotated[IdentityCheck, Form()],
    receiver_curp: Annotated[str, Form(max_length=18)] = "",
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    caller = _caller(request, "entrega")
    try:
        data = DeliveryIn(identity_check=identity_check,
                          receiver_curp=receiver_curp.strip().upper() or None)  # fmt: skip
        await printing.deliver(session, credential_id, data, caller)
    except (DomainError, ValidationError) as exc:
        await session.rollback()
        return back_to(request, f"/modulo/lotes/{code}", reason_of(exc))
    return back_to(request, f"/modulo/lotes/{code}", "Tarjeta entregada.")
