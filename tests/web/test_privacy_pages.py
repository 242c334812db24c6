"""The person's privacy pages: who looked at my data, and my data-protection requests (ARCO),
in Spanish, for the signed-in person only, through the same services as the API."""

from __future__ import annotations

import re

import httpx
import pytest

from salud.access.permissions import Role
from tests.conftest import TokenFor
from tests.factories.persons import person_doc
from tests.web.test_pages import _csrf

pytestmark = pytest.mark.db


def _session_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def _person(client: httpx.AsyncClient) -> dict[str, str]:
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    return doc


async def test_who_looked_at_my_data_page(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await _person(client)
    curp = doc["curp"]
    assert (await client.get(f"/api/v1/persons/{curp}")).status_code == 200
    nosy = token_for(Role.CITIZEN, curp=person_doc()["curp"], username="vecino.curioso")
    refused = await anonymous.get(f"/api/v1/persons/{curp}", headers=nosy)
    assert refused.status_code == 403
    for _ in range(50):  # more than a page
        assert (await client.get(f"/api/v1/persons/{curp}")).status_code == 200

    anonymous.cookies.clear()
    away = await anonymous.get("/mis-datos/accesos")
    assert away.status_code == 303
    assert away.headers["location"] == "/entrar?next=/mis-datos/accesos"
    anonymous.cookies.set("salud_session", _session_of(token_for(Role.SUPERVISOR)))
    assert (await anonymous.get("/mis-datos/accesos")).status_code == 403  # the person's own

    anonymous.cookies.set("salud_session", _session_of(token_for(Role.CITIZEN, curp=curp)))
    page = await anonymous.get("/mis-datos/accesos")
    assert page.status_code == 200, page.text
    assert "Quién consultó mis datos" in page.text
    assert "consultó sus datos del padrón" in page.text
    assert "supervisor de módulo" in page.text
    assert "vecino.curioso" not in page.text  # another citizen is not named to the person...
    older = re.search(r'href="(/mis-datos/accesos\?before=\d+)"', page.text)
    assert older is not None  # ...and the oldest entries are on the next page
    second = await anonymous.get(older.group(1))
    assert second.status_code == 200
    assert "negado" in second.text  # the refused attempt, among the oldest
    assert "lo registró en el padrón" in second.text  # the registration itself
    # Reading the page is itself an access, recorded on the person's log.
    again = await anonymous.get("/mis-datos/accesos")
    assert "consultó quién vio sus datos" in again.text
    assert "<strong>Usted</strong> consultó quién vio sus datos" in again.text
    assert "usted consultó su bitácora" in again.text  # the purpose, in words
    assert "mis-datos" not in again.text.split("<main", 1)[-1].split("href")[0]
    for odd in ("abc", "0", "-1", "9" * 30):  # a bad page is a page, not JSON
        bad = await anonymous.get("/mis-datos/accesos", params={"before": odd})
        assert bad.status_code == 422, odd
        assert bad.headers["content-type"].startswith("text/html")
        assert "Página inválida" in bad.text


async def test_my_data_protection_requests_page(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await _person(client)
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    anonymous.cookies.set("salud_session", _session_of(me))
    page = await anonymous.get("/mis-datos/solicitudes")
    assert page.status_code == 200, page.text
    assert "No ha presentado solicitudes" in page.text
    token = _csrf(page.text)
    forged = await anonymous.post(
        "/mis-datos/solicitudes", data={"kind": "access", "description": "copia de mis datos"}
    )
    assert forged.status_code == 403
    filed = await anonymous.post(
        "/mis-datos/solicitudes",
        data={"kind": "access", "description": "quiero copia de mis datos", "csrf": token},
    )
    assert filed.status_code == 303, filed.text
    assert filed.headers["location"].startswith("/mis-datos/solicitudes?presentada=ARCO-")
    listed = await anonymous.get(filed.headers["location"])
    folio = re.search(r"ARCO-\d{4}-\d{7}", listed.text)
    assert folio is not None
    assert "recibida" in listed.text  # the notice with the folio and its deadline
    assert "En trámite" in listed.text
    token = _csrf(listed.text)
    empty = await anonymous.post(
        "/mis-datos/solicitudes",
        data={"kind": "rectification", "description": "mi nombre está mal", "csrf": token},
    )
    assert empty.status_code == 422
    assert "Los datos correctos" in empty.text  # which part is missing, as the form says it
    assert "requested_changes" not in empty.text
    assert folio.group(0) in empty.text  # the list is still shown
    blank = await anonymous.post(
        "/mis-datos/solicitudes", data={"kind": "access", "csrf": _csrf(empty.text)}
    )
    assert blank.status_code == 422  # a page naming the field, not JSON
    assert blank.headers["content-type"].startswith("text/html")
    assert "Qué pide" in blank.text
    bad_phone = await anonymous.post(
        "/mis-datos/solicitudes",
        data={"kind": "rectification", "description": "mi teléfono cambió", "phone": "55",
              "csrf": _csrf(blank.text)},
    )  # fmt: skip
    assert bad_phone.status_code == 422
    assert "Teléfono (+52…)" in bad_phone.text
    # The notice is told from the person's own data: a link cannot plant one.
    planted = await anonymous.get(
        "/mis-datos/solicitudes",
        params={"aviso": "Su cuenta fue dada de baja", "presentada": "ARCO-2020-0000001"},
    )
    assert "dada de baja" not in planted.text
    assert "recibida" not in planted.text
    empty = bad_phone
    fixed = await anonymous.post(
        "/mis-datos/solicitudes",
        data={"kind": "rectification", "description": "mi tipo de sangre es A+",
              "blood_type": "A+", "csrf": _csrf(empty.text)},
    )  # fmt: skip
    assert fixed.status_code == 303, fixed.text
    mine = await anonymous.get(f"/api/v1/persons/{doc['curp']}/data-requests", headers=me)
    assert [r["kind"] for r in mine.json()] == ["access", "rectification"]
    assert mine.json()[1]["requested_changes"] == {"blood_type": "A+"}


def test_every_recorded_action_has_words_for_the_person() -> None:
    """The page shows each action in Spanish: every action the code records (a literal
    "domain:subject:verb") has its words, or is a FHIR type's read or write."""
    import re
    from pathlib import Path

    from salud.web import privacy

    src = Path(privacy.__file__).parents[1]
    found = set()
    for path in src.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found |= set(
            re.findall(
                r'"((?:identity|records|credentials|enrollment|access):[A-Za-z._-]+:[a-z-]+)"', text
            )
        )
    assert len(found) > 60
    # Those the code composes (a card's state, a batch's step): their values, spelled here.
    from salud.credentials.schemas import Status
    from salud.enrollment.printing import _NEXT

    found |= {f"credentials:credential:{s.value}" for s in Status} | {
        "credentials:credential:active"
    }
    found |= {f"enrollment:batch:{step}" for step in _NEXT.values()}
    for action in sorted(found):
        said = privacy._what(action)
        assert said != action, f"sin palabras para {action}"
        assert ":" not in said, (action, said)


def test_opening_the_cards_link_is_no_emergency() -> None:
    """Anyone holding the card may open its second QR: the person sees that someone did,
    in plain words, and never an emergency (that is a clinician's break-the-glass only)."""
    from datetime import UTC, datetime

    from salud.access.schemas import AccessRead
    from salud.web import privacy

    def entry(action: str, purpose: str | None, reason: str | None) -> AccessRead:
        return AccessRead(
            seq=1, at=datetime(2026, 12, 2, 18, 0, tzinfo=UTC), actor="anonimo",
            role="public", institution_code=None, clues=None, action=action,
            purpose=purpose, reason=reason, outcome="success", person_curp=None,
        )  # fmt: skip

    link = privacy._shown(entry("credentials:link:open", "tarjeta", "código"), {})
    assert (link.who, link.role, link.emergency) == ("alguien sin sesión", "sin sesión", False)
    assert link.what == "abrió el enlace de unidades cercanas de su tarjeta"
    assert link.at.hour == 12  # Mexico's time
    opened = privacy._shown(entry("records:Condition:read", "emergency", "inconsciente"), {})
    assert (opened.emergency, opened.why) == (True, "inconsciente")
    assert opened.what == "consultó en su expediente (Condition)"
