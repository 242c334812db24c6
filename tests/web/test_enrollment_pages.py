"""The credentialization pages without a browser: booking by CURP with the CSRF token, the
module desk only for module staff, and a citizen's report of a lost card."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.api.input_guard import MAX_FORM
from salud.enrollment.models import Enrollment
from salud.identity.synth import synthetic_face
from salud.kit.clock import today_mx
from salud.web.pages import SESSION
from tests.conftest import TokenFor
from tests.enrollment.conftest import MODULE, Drive, E, make_drive
from tests.enrollment.test_enrollment import enroll_adult
from tests.factories.persons import person_doc

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key")]


@pytest.fixture
async def drive(anonymous: httpx.AsyncClient, token_for: TokenFor) -> Drive:
    return await make_drive(anonymous, token_for)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _cookie(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    client.cookies.set(SESSION, headers["Authorization"].removeprefix("Bearer "))


async def test_booking_by_curp_needs_the_csrf_token(
    anonymous: httpx.AsyncClient, drive: Drive
) -> None:
    curp = person_doc()["curp"]
    page = await anonymous.get("/cita", params={"curp": curp, "state": "13", "module": MODULE})
    assert page.status_code == 200
    assert MODULE in page.text
    day = re.search(r'name="day" value="([0-9-]+)"', page.text)
    assert day is not None
    fields = {"curp": curp, "module": MODULE, "day": day.group(1)}
    assert (await anonymous.post("/cita", data=fields)).status_code == 403
    booked = await anonymous.post("/cita", data={**fields, "csrf": _csrf(page.text)})
    assert booked.status_code == 201
    folio = re.search(r'id="folio">([A-Z0-9]+)<', booked.text)
    assert folio is not None
    again = await anonymous.post("/cita", data={**fields, "csrf": _csrf(page.text)})
    assert again.status_code == 409
    assert "no es posible agendar" in again.text
    malformed = {**fields, "curp": "NO-ES-CURP", "csrf": _csrf(page.text)}
    refused = await anonymous.post("/cita", data=malformed)
    assert refused.status_code == 422  # bad input is not a conflict
    assert "curp" in refused.text.lower()
    short = await anonymous.post("/cita", data={**malformed, "curp": "ABC"})
    assert short.status_code == 422
    assert "demasiado corto" in short.text  # the page speaks Spanish, as the API does
    assert "String should" not in short.text
    cancelled = await anonymous.post(
        "/cita/cancelar", data={"curp": curp, "folio": folio.group(1), "csrf": _csrf(page.text)}
    )
    assert cancelled.status_code == 200
    assert "Cita cancelada" in cancelled.text


async def test_the_desk_is_for_module_staff(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    away = await anonymous.get("/modulo")
    assert away.status_code == 303
    assert away.headers["location"] == "/entrar?next=/modulo"
    _cookie(anonymous, token_for(Role.VERIFIER))
    assert (await anonymous.get("/modulo")).status_code == 403
    _cookie(anonymous, drive.operator)
    desk = await anonymous.get("/modulo")
    assert desk.status_code == 200
    assert "Módulo Centro de Salud Pachuca" in desk.text
    assert "Abrir el módulo" not in desk.text  # an operator does not open or close it
    # A fingerprint sent as a bare form (no file): the reason, not a 500 (the form was read,
    # then the body again as an image).
    bare = await anonymous.post(
        "/modulo/registro/R-2026-0000001/huella", data={"finger": "1"},
        headers={"X-CSRF-Token": _csrf(desk.text)},
    )  # fmt: skip
    assert bare.status_code == 303
    assert "archivo" in bare.headers["location"]
    # The receipt of an enrollment still open is a page with the reason, not problem+json.
    visitor = person_doc()
    started = await anonymous.post(
        f"{E}/enrollments", json={"curp": visitor["curp"], "person": visitor},
        headers=drive.operator,
    )  # fmt: skip
    assert started.status_code == 201, started.text
    early = await anonymous.get(f"/modulo/registro/{started.json()['folio']}/comprobante")
    assert early.status_code == 409
    assert early.headers["content-type"].startswith("text/html"), early.text


async def test_a_citizen_reports_a_lost_card(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    receipt = await enroll_adult(anonymous, drive, 41)
    _cookie(anonymous, token_for(Role.CITIZEN, curp=receipt["curp"]))
    page = await anonymous.get("/credencial/reposicion")
    assert page.status_code == 200
    done = await anonymous.post("/credencial/reposicion", data={"csrf": _csrf(page.text)})
    assert done.status_code == 200, done.text
    assert "tarjeta número 2" in done.text
    cards = await anonymous.get(
        f"/api/v1/persons/{receipt['curp']}/credentials", headers=drive.operator
    )
    states = sorted(c["status"] for c in cards.json())
    assert states == ["issued", "superseded"]


async def test_the_desk_reissues_a_lost_card(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    receipt = await enroll_adult(anonymous, drive, 43)
    _cookie(anonymous, drive.operator)
    desk = await anonymous.get("/modulo")
    token = _csrf(desk.text)
    first = await anonymous.post(
        "/modulo/reposicion", data={"curp": receipt["curp"], "reason": "first", "csrf": token}
    )
    assert "primera tarjeta" in unquote_plus(first.headers["location"])
    done = await anonymous.post(
        "/modulo/reposicion", data={"curp": receipt["curp"], "reason": "lost", "csrf": token}
    )
    assert done.status_code == 303
    assert "Tarjeta número 2 expedida" in unquote_plus(done.headers["location"])
    cards = await anonymous.get(
        f"/api/v1/persons/{receipt['curp']}/credentials", headers=drive.operator
    )
    assert sorted(c["status"] for c in cards.json()) == ["issued", "superseded"]


async def test_a_notice_shows_only_as_the_desk_sealed_it(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    receipt = await enroll_adult(anonymous, drive, 44)
    _cookie(anonymous, drive.operator)
    token = _csrf((await anonymous.get("/modulo")).text)
    said = await anonymous.post(
        "/modulo/reposicion", data={"curp": receipt["curp"], "reason": "first", "csrf": token}
    )
    sealed = await anonymous.get(said.headers["location"])
    assert "primera tarjeta" in sealed.text
    # A link made elsewhere cannot put words on a staff page, with no seal or a seal of
    # other words.
    crafted = "Llame al 555 000 0000 para validar su cuenta."
    bare = await anonymous.get("/modulo", params={"aviso": crafted})
    assert bare.status_code == 200
    assert crafted not in bare.text
    params = dict(httpx.URL(said.headers["location"]).params)
    forged = await anonymous.get("/modulo", params={**params, "aviso": crafted})
    assert crafted not in forged.text
    # A seal is for its page, its session and two minutes: the same link on another page,
    # in another staff member's session, or later, shows nothing; a seal that is not even
    # ASCII is no seal (it was a 500).
    words = params["aviso"]
    elsewhere = await anonymous.get("/modulo/revisiones", params=params)
    assert words not in elsewhere.text
    assert words in (await anonymous.get("/modulo", params=params)).text
    later = await anonymous.get("/modulo", params={**params, "hasta": "1000000000"})
    assert words not in later.text
    for odd in ({"firma": "é"}, {"hasta": "²"}, {"hasta": "9" * 5000}):
        assert (await anonymous.get("/modulo", params={**params, **odd})).status_code == 200
    anonymous.cookies.clear()
    _cookie(anonymous, token_for(Role.SUPERVISOR, username="otra.supervisora", module=MODULE))
    other = await anonymous.get("/modulo", params=params)
    assert other.status_code == 200
    assert words not in other.text
    # A long notice (a list of problems) is not refused by the page that shows it.
    long = await anonymous.get("/modulo", params={"aviso": "x" * 600, "firma": "0" * 32})
    assert long.status_code == 200


def _multipart_of(field: str, size: int, counter: list[int]) -> Any:
    """A multipart body streamed chunk by chunk (an image of `size` bytes in `field`),
    counting in `counter` how much the server pulled."""

    async def body() -> AsyncIterator[bytes]:
        yield (f'--XyZ\r\nContent-Disposition: form-data; name="{field}"; filename="a.jpg"\r\n'
               "Content-Type: image/jpeg\r\n\r\n").encode()  # fmt: skip
        chunk = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            counter[0] += len(chunk)
            yield chunk
        yield b"\r\n--XyZ--\r\n"

    return body()


MULTIPART = {"content-type": "multipart/form-data; boundary=XyZ"}


async def test_desk_uploads_are_read_after_the_gate_and_never_past_a_bound(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    """The form was parsed (its files spooled to disk, of any size) before the CSRF and
    permission checks: any signed-in user could fill the server's temporary disk."""
    big = 5 << 20  # past the desk's 2 MB, within the 8 MB any form may weigh (input_guard)
    _cookie(anonymous, token_for(Role.CITIZEN, curp=person_doc()["curp"]))
    await anonymous.get("/modulo")  # a page: the CSRF cookie of this session
    pulled = [0]
    refused = await anonymous.post("/modulo/registro/RABCDEFGH23/foto",
                                   headers={**MULTIPART, "content-length": str(big + 200)},
                                   content=_multipart_of("photo", big, pulled))  # fmt: skip
    assert refused.status_code == 403
    assert pulled[0] <= 1 << 20, pulled  # not read: the gate said no first
    visitor = person_doc()
    started = await anonymous.post(f"{E}/enrollments", headers=drive.operator,
                                   json={"curp": visitor["curp"], "person": visitor})  # fmt: skip
    folio = started.json()["folio"]
    _cookie(anonymous, drive.operator)
    token = _csrf((await anonymous.get("/modulo")).text)
    for path, field in (("foto", "photo"), ("huella", "image")):
        declared, chunked = [0], [0]
        said = await anonymous.post(  # a Content-Length past the bound: refused unread
            f"/modulo/registro/{folio}/{path}", content=_multipart_of(field, big, declared),
            headers={**MULTIPART, "content-length": str(big + 200)},
        )  # fmt: skip
        assert said.status_code == 303
        assert "pesa más de 2 MB" in unquote_plus(said.headers["location"])
        assert declared[0] <= 1 << 20, declared
        streamed = await anonymous.post(  # no Content-Length: read no further than the bound
            f"/modulo/registro/{folio}/{path}", content=_multipart_of(field, big, chunked),
            headers=MULTIPART,
        )  # fmt: skip
        assert streamed.status_code == 303
        assert "pesa más de 2 MB" in unquote_plus(streamed.headers["location"])
        assert chunked[0] <= 4 << 20, chunked
        huge = [0]  # said to be past what any form may weigh: refused unread, in words
        past = await anonymous.post(
            f"/modulo/registro/{folio}/{path}", content=_multipart_of(field, 40 << 20, huge),
            headers={**MULTIPART, "content-length": str(MAX_FORM + 1)},
        )  # fmt: skip
        assert past.status_code == 413
        assert "pesa más de 8 MB" in past.text
        assert huge[0] <= 1 << 20, huge
        streamed_huge = [0]  # without a length: the desk stops at its own 2 MB as before
        said_huge = await anonymous.post(
            f"/modulo/registro/{folio}/{path}",
            content=_multipart_of(field, 40 << 20, streamed_huge), headers=MULTIPART,
        )  # fmt: skip
        assert said_huge.status_code == 303
        assert streamed_huge[0] <= 4 << 20, streamed_huge
    # A photo within the bound is taken as before.
    fine = await anonymous.post(
        f"/modulo/registro/{folio}/foto", data={"csrf": token},
        files={"photo": ("cara.jpg", synthetic_face(3), "image/jpeg")},
    )  # fmt: skip
    assert "Fotografía guardada" in unquote_plus(fine.headers["location"])


async def test_the_desk_lists_the_work_under_way_and_resumes_it(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """docs/enrollment.md said an enrollment left open goes on another day, but the desk had
    no list of them and typing the CURP again cancelled it."""
    visitor = person_doc()
    started = await anonymous.post(f"{E}/enrollments", headers=drive.operator,
                                   json={"curp": visitor["curp"], "person": visitor})  # fmt: skip
    folio = started.json()["folio"]
    yesterday = today_mx() - timedelta(days=1)
    async with sessions() as s, s.begin():
        await s.execute(update(Enrollment).where(Enrollment.folio == folio)
                        .values(visit_day=yesterday))  # fmt: skip
    _cookie(anonymous, drive.operator)
    desk = await anonymous.get("/modulo")
    assert f'href="/modulo/registro/{folio}"' in desk.text
    assert "Registros en curso: 1" in desk.text
    assert "Fotografía" in desk.text  # what it is missing
    form = {"csrf": _csrf(desk.text), "curp": visitor["curp"]}
    again = await anonymous.post("/modulo/registro", data=form)
    assert again.status_code == 303
    assert again.headers["location"].startswith(f"/modulo/registro/{folio}?")
    assert "retomado" in unquote_plus(again.headers["location"])
    state = await anonymous.get(f"{E}/enrollments/{folio}", headers=drive.operator)
    assert (state.json()["status"], state.json()["visit_day"]) == ("open", today_mx().isoformat())


async def test_the_enrollment_page_shows_every_exception(
    anonymous: httpx.AsyncClient, drive: Drive, token_for: TokenFor
) -> None:
    other = token_for(Role.SUPERVISOR, username="supervisora.dos", module=MODULE)
    visitor = person_doc()
    started = await anonymous.post(f"{E}/enrollments", headers=drive.supervisor,
                                   json={"curp": visitor["curp"], "person": visitor})  # fmt: skip
    folio = started.json()["folio"]
    for waive, reason in (("address_proof", "vive en albergue tras la inundación"),
                          ("curp", "la CURP certificada llega mañana")):  # fmt: skip
        done = await anonymous.post(f"{E}/enrollments/{folio}/exception", headers=other,
                                    json={"waive": [waive], "reason": reason})  # fmt: skip
        assert done.status_code == 200, done.text
    _cookie(anonymous, drive.supervisor)
    page = await anonymous.get(f"/modulo/registro/{folio}")
    assert "vive en albergue tras la inundación" in page.text
    assert "la CURP certificada llega mañana" in page.text
    assert page.text.count("supervisora.dos") == 2
    assert 'id="four-eyes"' in page.text  # this supervisor does it: another one approves
    assert 'id="complete"' in page.text
    # The supervisor who approved is not offered "Concluir" (the server refuses it anyway).
    anonymous.cookies.clear()
    _cookie(anonymous, other)
    theirs = await anonymous.get(f"/modulo/registro/{folio}")
    assert 'id="approved-by-you"' in theirs.text
    assert 'id="complete"' not in theirs.text


async def test_the_receipt_says_the_day_in_mexico(
    anonymous: httpx.AsyncClient, drive: Drive, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Completed at 21:00 in Mexico City, the receipt said the next day (the UTC date)."""
    receipt = await enroll_adult(anonymous, drive, 45)
    async with sessions() as s, s.begin():
        await s.execute(update(Enrollment).where(Enrollment.folio == receipt["folio"])
                        .values(completed_at=datetime(2026, 3, 10, 3, 0, tzinfo=UTC)))  # fmt: skip
    _cookie(anonymous, drive.operator)
    page = await anonymous.get(f"/modulo/registro/{receipt['folio']}/comprobante")
    assert page.status_code == 200, page.text
    assert re.search(r"Registrada</dt>\s*<dd[^>]*>09/03/2026<", page.text), page.text
