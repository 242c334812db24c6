"""The pages without a browser: CSRF on every state-changing request, sessions in
HttpOnly SameSite=Strict cookies, the second QR's page shows units and nobody's identity."""

from __future__ import annotations

import io
import re

import httpx
import pyotp
import pytest
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import repository as accounts
from salud.access import service as access
from salud.access.permissions import Role
from salud.access.schemas import AccountCreate
from salud.config import Settings
from tests.conftest import TokenFor, keyring_of
from tests.credentials.test_credentials_api import issued, registered, scan

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key")]
PASSWORD = "Prueba-Segura-2026"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def _verifier(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> str:
    ring = keyring_of(settings)
    async with sessions() as session, session.begin():
        await access.create_account(
            session,
            AccountCreate(username="recepcion.web", display_name="Recepción", role=Role.VERIFIER,
                          password=PASSWORD, institution_code=3),
            ring,
        )  # fmt: skip
        account = await accounts.by_username(session, "recepcion.web")
        assert account is not None
        secret = access.totp_secret(account, ring)
    assert secret is not None
    return pyotp.TOTP(secret).now()


async def test_sign_in_needs_the_csrf_token_and_sets_a_strict_session(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    code = await _verifier(sessions, settings)
    form = await anonymous.get("/entrar")
    assert form.status_code == 200
    assert "default-src 'self'" in form.headers["content-security-policy"]
    # The API documentation's page alone loads its viewer from a CDN; no other path that
    # merely ends in /docs gets that policy.
    docs = await anonymous.get("/api/v1/docs")
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    for path in ("/U/docs", "/fhir/docs", "/docs"):
        other = await anonymous.get(path)
        assert "unsafe-inline" not in other.headers["content-security-policy"], path
    token = _csrf(form.text)
    fields = {"username": "recepcion.web", "password": PASSWORD, "totp": code}
    missing = await anonymous.post("/entrar", data=fields)
    assert missing.status_code == 403
    forged = await anonymous.post("/entrar", data={**fields, "csrf": token[:-1] + "x"})
    assert forged.status_code == 403
    accented = await anonymous.post("/entrar", data={**fields, "csrf": token[:-1] + "é"})
    assert accented.status_code == 403  # not a 500 (compare_digest refuses non-ASCII text)
    wrong = await anonymous.post("/entrar", data={**fields, "password": "no", "csrf": token})
    assert wrong.status_code == 401
    assert "incorrectos" in wrong.text
    ok = await anonymous.post("/entrar", data={**fields, "csrf": token})
    assert ok.status_code == 303
    assert ok.headers["location"] == "/verificar"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie

    page = await anonymous.get("/verificar")
    assert page.status_code == 200
    page_token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert page_token is not None
    no_header = await anonymous.post("/verificar/texto", json={"qr": "NO ES"})
    assert no_header.status_code == 403
    checked = await anonymous.post(
        "/verificar/texto", json={"qr": "NO ES"}, headers={"X-CSRF-Token": page_token.group(1)}
    )
    assert checked.status_code == 200
    assert checked.json()["reason"] == "not_base45"
    latin = await anonymous.post(
        "/verificar/texto", json={"qr": "NO ES"},
        headers={"X-CSRF-Token": page_token.group(1)[:-1].encode() + b"\xe9"},
    )  # fmt: skip
    assert latin.status_code == 403
    # A token is good for the session it was given in: the one taken before signing in (as
    # a subdomain could take one and plant it) is refused in the signed-in session.
    anonymous.cookies.set("salud_csrf", token)
    planted = await anonymous.post(
        "/verificar/texto", json={"qr": "NO ES"}, headers={"X-CSRF-Token": token}
    )
    assert planted.status_code == 403
    # A page left open past its session (the card page is): its button still signs out and
    # clears the phone, though its token was bound to the session that expired.
    anonymous.cookies.clear()
    anonymous.cookies.set("salud_csrf", page_token.group(1))
    out = await anonymous.post(
        "/salir", data={"csrf": page_token.group(1)}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert out.status_code == 303
    assert out.headers["clear-site-data"] == '"cache", "storage"'
    # Another site's form (it carries no session cookie) cannot wipe the card kept on the
    # phone: without a session, only this site's own pages clear it.
    for foreign in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "https://ataque.example"}):  # fmt: skip
        forced = await anonymous.post("/salir", headers=foreign)
        assert forced.status_code == 303
        assert "clear-site-data" not in forced.headers, foreign


async def test_pages_need_a_session(anonymous: httpx.AsyncClient) -> None:
    page = await anonymous.get("/verificar")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/entrar")
    assert (await anonymous.get("/credencial/datos")).status_code == 401
    shell = await anonymous.get("/credencial/")
    assert shell.status_code == 200  # the shell holds no personal data
    sw = await anonymous.get("/credencial/sw.js")
    assert sw.headers["content-type"].startswith("text/javascript")


async def test_the_second_qr_page_lists_units_without_naming_the_holder(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    back = await client.get(f"/api/v1/credentials/{card['credential_id']}/card/back")
    assert back.status_code == 200
    link = next(t for t in scan(Image.open(io.BytesIO(back.content))) if t.startswith("HTTP"))
    path = "/U/" + link.split("/U/")[1]
    page = await anonymous.get(path, params={"lat": 20.1, "lng": -98.7})
    assert page.status_code == 200
    assert "Unidades de salud cercanas" in page.text
    assert doc["curp"] not in page.text
    assert doc["given_names"] not in page.text
    assert (await anonymous.get("/U/AAAAAAAA")).status_code == 404
    # It read the holder's affiliations (and, without a location, the address): audited,
    # and shown in the person's "who looked at my data".
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    log = (await anonymous.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=me)).json()
    opened = [e for e in log["items"] if e["action"] == "credentials:link:open"]
    assert [(e["actor"], e["role"]) for e in opened] == [("anonimo", "public")]
    # 64 random bits (13 letters and digits; 8 were 40 bits, about one real card in 8,500
    # guesses at the country's scale), still a version 2 QR; guessing is slowed per address.
    code = path.removeprefix("/U/")
    assert len(code) == 13
    assert re.fullmatch(r"[A-Z2-7]{13}", code)
    half = await anonymous.get(path, params={"lat": 20.1})
    assert half.status_code == 422  # half a point is named, not silently dropped
    # Every answer is a page a phone shows, errors included, in words.
    for params in ({"lat": 20.1}, {"lat": "nan", "lng": -98.7}, {"lat": 40, "lng": -98.7},
                   {"lat": "norte", "lng": -98.7}, {"lat": "2_0.1", "lng": -98.7},
                   {"lat": "٢٠", "lng": -98.7},
                   {"lat": ["abc", "20.1"], "lng": -98.7}):  # fmt: skip
        refused = await anonymous.get(path, params=params)
        assert refused.status_code == 422, params
        assert refused.headers["content-type"].startswith("text/html"), params
        assert "vuelva a intentarlo" in refused.text, params
    outside = await anonymous.get(path, params={"lat": 40, "lng": -98.7})
    assert "no está en México" in outside.text  # the country's name as written
    gone = await anonymous.get("/U/AAAAAAAA")
    assert gone.headers["content-type"].startswith("text/html")
    assert "no corresponde a una credencial vigente" in gone.text
    # From the registered address (a locality's centre), distances are approximate.
    home = await anonymous.get(path)
    assert "Las distancias son aproximadas" in home.text or "No hay un domicilio" in home.text
    assert "unos 0 km" not in home.text
    # The holder's own link is never counted (phones may share one carrier address)...
    assert {(await anonymous.get(path)).status_code for _ in range(35)} == {200}
    # ...codes that name no card are: after 30 in a minute, the address waits.
    # (two were tried above: 28 more, then the address waits)
    statuses = [(await anonymous.get("/U/AAAAAAAAAAAAA")).status_code for _ in range(40)]
    assert statuses[:28] == [404] * 28
    assert set(statuses[29:]) == {429}
    waiting = await anonymous.get(path)
    assert waiting.status_code == 429  # the wait is the address's
    assert int(waiting.headers["retry-after"]) >= 1


async def test_a_void_cards_own_link_is_not_counted_as_guessing(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    """After a reissue the old plastic is void at once while the new one waits for printing:
    its holder opening the old link again and again is no one guessing codes."""
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    back = await client.get(f"/api/v1/credentials/{card['credential_id']}/card/back")
    link = next(t for t in scan(Image.open(io.BytesIO(back.content))) if t.startswith("HTTP"))
    path = "/U/" + link.split("/U/")[1]
    again = await client.post(f"/api/v1/persons/{doc['curp']}/credentials", json={"reason": "lost"})
    assert again.status_code == 201, again.text
    statuses = {(await anonymous.get(path)).status_code for _ in range(35)}
    assert statuses == {404}


async def test_only_signing_out_clears_what_the_phone_keeps(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    """The digital card is kept on the phone (localStorage, the service worker's cache) for
    when there is no network: opening a page, the card's or any other, must never clear it;
    signing out does (a shared phone). Personal pages are never cached (no-store)."""
    from salud.access.principal import Principal
    from salud.access.tokens import SESSION_COOKIE

    doc = await registered(client)
    await issued(client, doc["curp"])
    app = anonymous._transport.app  # type: ignore[attr-defined]
    citizen = Principal(f"account:{doc['curp']}", doc["curp"], Role.CITIZEN, None,
                        curp=doc["curp"])  # fmt: skip
    anonymous.cookies.set(SESSION_COOKIE, app.state.tokens.issue(citizen, page=True))
    for path in ("/", "/entrar", "/credencial/", "/credencial/datos", "/credencial/menores",
                 "/credencial/reposicion", "/avisos", "/mis-datos/accesos"):  # fmt: skip
        page = await anonymous.get(path)
        assert page.status_code == 200, (path, page.status_code)
        assert "clear-site-data" not in page.headers, path
        assert page.headers["cache-control"] == "no-store", path
    card = await anonymous.get("/credencial/")
    out = await anonymous.post(
        "/salir", data={"csrf": _csrf(card.text)}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert out.status_code == 303
    assert out.headers["clear-site-data"] == '"cache", "storage"'
