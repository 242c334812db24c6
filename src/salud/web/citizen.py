"""Credentialization pages for the person (Spanish): booking by CURP (/cita), their notices
(/avisos) and the report of a lost card (/credencial/reposicion). Thin: each handler checks
the session and the CSRF token and calls the same services as the API."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from salud.access.context import Caller
from salud.access.permissions import Role
from salud.credentials import service as credentials
from salud.enrollment import booking, notify
from salud.enrollment.schemas import (
    BookingIn,
)
from salud.errors import DomainError, InvalidInput
from salud.identity import guardians
from salud.web import csrf
from salud.web.forms import reason_of, state_names
from salud.web.pages import (
    ReadSession,
    WriteSession,
    _caller,
    _check_csrf,
    _page,
    _principal,
)

router = APIRouter(include_in_schema=False)

# --- the citizen's booking ----------------------------------------------------------------


def _booking_caller(request: Request, curp: str) -> Caller:
    principal = _principal(request)
    if principal is not None:
        return Caller(principal, request.app.state.audit, purpose="cita")
    host = request.client.host if request.client else "?"
    if request.app.state.booking_limiter.hit(host):
        raise InvalidInput.on("curp", "demasiadas solicitudes desde esta dirección; espere")
    return Caller(booking.anonymous_principal(curp), request.app.state.audit, purpose="cita")


@router.get("/cita", response_class=HTMLResponse)
async def booking_page(
    request: Request,
    session: ReadSession,
    curp: Annotated[str, Query(max_length=18)] = "",
    state: Annotated[str, Query(max_length=2)] = "",
    module: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    curp = curp.strip().upper()
    context: dict[str, Any] = {
        "principal": _principal(request), "curp": curp, "state": state, "module": module,
        "states": state_names(request), "modules": [], "availability": None, "error": None,
    }  # fmt: skip
    if state:
        context["modules"] = await booking.list_modules(session, state, "open")
    if curp and module:
        try:
            context["availability"] = await booking.availability(session, module, curp)
        except DomainError as exc:
            context["error"] = reason_of(exc)
    return _page(request, "booking.html", context)


@router.post("/cita", response_class=HTMLResponse)
async def book(
    request: Request,
    session: WriteSession,
    curp: Annotated[str, Form(max_length=18)],
    module: Annotated[str, Form(max_length=20)],
    day: Annotated[date, Form()],
    contact: Annotated[str, Form(max_length=254)] = "",
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    try:
        data = BookingIn(curp=curp, module_code=module, day=day, contact=contact or None)
        done = await booking.book(session, data, _booking_caller(request, data.curp))
    except (DomainError, ValidationError) as exc:
        await session.rollback()
        failed = {"principal": _principal(request), "error": reason_of(exc), "appointment": None}
        status = exc.status if isinstance(exc, DomainError) else 422  # a form error
        return _page(request, "booked.html", failed, status)
    context: dict[str, Any] = {"principal": _principal(request), "error": None, "appointment": done}
    return _page(request, "booked.html", context, 201)


@router.post("/cita/cancelar", response_class=HTMLResponse)
async def cancel_booking(
    request: Request,
    session: WriteSession,
    curp: Annotated[str, Form(max_length=18)],
    folio: Annotated[str, Form(max_length=12)],
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    curp = curp.strip().upper()
    try:
        done = await booking.cancel(session, folio.strip().upper(), curp,
                                    _booking_caller(request, curp))  # fmt: skip
    except DomainError as exc:
        await session.rollback()
        failed = {"principal": _principal(request), "error": reason_of(exc), "appointment": None}
        return _page(request, "booked.html", failed, exc.status)
    context: dict[str, Any] = {"principal": _principal(request), "error": None, "appointment": done}
    return _page(request, "booked.html", context)


# --- the citizen's notices --------------------------------------------------------------


@router.get("/avisos", response_class=HTMLResponse)
async def notices(request: Request, session: ReadSession) -> Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/entrar?next=/avisos", status_code=303)
    if principal.curp is None:
        return _page(request, "forbidden.html", {"principal": principal}, 403)
    found = await notify.mine(session, _caller(request, "avisos"))
    return _page(request, "notices.html", {"principal": principal, "notices": found})


# --- the minors a parent or guardian answers for -----------------------------------------


@router.get("/credencial/menores", response_class=HTMLResponse)
async def wards_page(request: Request, session: ReadSession) -> Response:
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/entrar?next=/credencial/menores", status_code=303)
    if principal.role is not Role.CITIZEN:
        return _page(request, "forbidden.html", {"principal": principal}, 403)
    found = await guardians.my_wards(session, _caller(request, "tutor"))
    return _page(request, "wards.html", {"principal": principal, "wards": found})


# --- the citizen reports a lost card ----------------------------------------------------


@router.get("/credencial/reposicion", response_class=HTMLResponse)
async def reissue_page(request: Request, de: Annotated[str, Query(max_length=18)] = "") -> Response:
    """The page to report a lost card: one's own, or (`?de=CURP`) that of a minor one answers
    for (checked when the report is sent)."""
    principal = _principal(request)
    if principal is None:
        return RedirectResponse("/entrar?next=/credencial/reposicion", status_code=303)
    if principal.role is not Role.CITIZEN:
        return _page(request, "forbidden.html", {"principal": principal}, 403)
    context = {"principal": principal, "done": None, "error": None, "de": _ward(de)}
    return _page(request, "reissue.html", context)


def _ward(text: str) -> str | None:
    value = text.strip().upper()
    return value or None


@router.post("/credencial/reposicion", response_class=HTMLResponse)
async def reissue(
    request: Request,
    session: WriteSession,
    csrf_token: Annotated[str, Form(alias=csrf.FIELD)] = "",
    de: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    _check_csrf(request, csrf_token)
    caller = _caller(request, "reposicion")
    state = request.app.state
    holder = _ward(de)
    try:
        done = await credentials.report_lost(
            session, state.signer, state.keyring, state.credential_config, caller, holder
        )
    except DomainError as exc:
        await session.rollback()
        return _page(request, "reissue.html", {"principal": caller.principal, "done": None,
                                               "error": reason_of(exc), "de": holder},
                     exc.status)  # fmt: skip
    return _page(request, "reissue.html", {"principal": caller.principal, "done": done,
                                           "error": None, "de": holder})  # fmt: skip
