"""The verifier's page scans a rendered card through a (fake) camera; the citizen's digital
card shows a QR that verifies, and still opens offline once loaded."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Browser, Page, Route, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import repository as accounts
from salud.access import service as access
from salud.access.permissions import Role
from salud.access.schemas import AccountCreate
from salud.config import Settings
from salud.credentials.keyset import KeySet
from salud.credentials.verify import offline_verdict, verify
from salud.kit.clock import today_mx
from tests.conftest import TokenFor, keyring_of
from tests.credentials.test_credentials_api import back_of, issued, registered, signed_qr_of
from tests.e2e.conftest import ARTIFACTS, FAKE_CAMERA

PASSWORD = "Prueba-Segura-2026"


def write_y4m(image: Image.Image, path: Any) -> None:
    """One I420 frame (YUV4MPEG2), the format Chromium's fake camera plays in a loop."""
    canvas = Image.new("RGB", (1280, 720), (90, 90, 90))
    card = image.convert("RGB")
    canvas.paste(card, ((1280 - card.width) // 2, (720 - card.height) // 2))
    y, cb, cr = canvas.convert("YCbCr").split()
    half = (640, 360)
    frame = y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes()
    with open(path, "wb") as out:
        out.write(b"YUV4MPEG2 W1280 H720 F10:1 Ip A1:1 C420jpeg\nFRAME\n" + frame)


async def account(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, username: str, role: Role,
    curp: str | None = None,
) -> str | None:  # fmt: skip
    """Create an account; its current TOTP code (staff) or None (citizen)."""
    ring = keyring_of(settings)
    async with sessions() as session, session.begin():
        await access.create_account(
            session,
            AccountCreate(username=username, display_name=username, role=role,
                          password=PASSWORD, institution_code=3, curp=curp,
                          totp=role is not Role.CITIZEN),
            ring,
        )  # fmt: skip
        found = await accounts.by_username(session, username)
        assert found is not None
        secret = access.totp_secret(found, ring)
    return pyotp.TOTP(secret).now() if secret else None


async def sign_in(page: Page, username: str, code: str | None) -> None:
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    if code:
        await page.fill("input[name=totp]", code)
    await page.click("button[type=submit]")


async def test_the_verifier_scans_a_card_with_the_camera(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    live_server: str,
    browser: Browser,
    token_for: TokenFor,
) -> None:
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    back = await back_of(client, card["credential_id"])
    qr = signed_qr_of(back)
    write_y4m(back, FAKE_CAMERA)
    code = await account(sessions, settings, "recepcion.e2e", Role.VERIFIER)

    page = await (await browser.new_context(viewport={"width": 412, "height": 900})).new_page()
    await page.goto(f"{live_server}/verificar")
    assert "/entrar" in page.url
    await sign_in(page, "recepcion.e2e", code)
    await page.wait_for_url(f"{live_server}/verificar")
    await page.click("#camera")
    verdict = page.locator("#verdict")
    await expect(verdict).to_have_text("Credencial válida", timeout=20_000)
    await expect(page.locator("#r-curp")).to_have_text(doc["curp"])
    await expect(page.locator("#photo")).to_be_visible()
    await expect(page.locator("#r-card")).to_contain_text("vigente")
    await page.screenshot(path=ARTIFACTS / "verificador-camara.png", full_page=True)

    # A barcode scanner types the text: a tampered card is refused with the reason.
    tampered = qr[:40] + ("0" if qr[40] != "0" else "1") + qr[41:]
    await page.fill("#qr", tampered)
    await page.click("#manual button[type=submit]")
    await expect(verdict).to_contain_text("NO válida", timeout=10_000)
    await page.screenshot(path=ARTIFACTS / "verificador-rechazo.png", full_page=True)

    # The validation is in the person's access log (the tampered one names nobody).
    auditor = token_for(Role.AUDITOR)
    log = await client.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=auditor)
    entries = [e for e in log.json()["items"] if e["action"] == "credentials:card:validate"]
    assert [e["actor"] for e in entries] == ["recepcion.e2e"]


async def test_the_digital_card_verifies_and_opens_offline(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    live_server: str,
    browser: Browser,
) -> None:
    doc = await registered(client)
    await issued(client, doc["curp"])
    await account(sessions, settings, "persona.e2e", Role.CITIZEN, curp=doc["curp"])
    context = await browser.new_context(viewport={"width": 412, "height": 915})
    page = await context.new_page()
    await page.goto(f"{live_server}/credencial/")
    await page.wait_for_url("**/entrar**")
    await sign_in(page, "persona.e2e", None)
    await page.wait_for_url(f"{live_server}/credencial/")
    await expect(page.locator("#card")).to_be_visible(timeout=10_000)
    await expect(page.locator("#curp")).to_have_text(doc["curp"])
    await expect(page.locator("#as-of")).to_contain_text("vigente al")
    shot = await page.screenshot(path=ARTIFACTS / "credencial-digital.png", full_page=True)

    # The QR on the screen decodes and verifies with the published keys: valid as of now.
    found = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(shot)))]
    assert len(found) == 1, found
    async with httpx.AsyncClient(base_url=live_server) as web:
        keys = KeySet.from_jwks((await web.get("/.well-known/jwks.json")).json())
        manifest = (await web.get("/credencial/manifest.webmanifest")).json()
    verified = verify(found[0], keys)
    assert verified.claims.holder.curp == doc["curp"]
    assert offline_verdict(verified)[0] == "valid_as_of"

    # Installable and offline: the service worker holds the shell, the phone the card.
    await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    assert manifest["start_url"] == "/credencial/"
    await page.reload()  # let the service worker control the page
    await expect(page.locator("#card")).to_be_visible()
    await context.set_offline(True)
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Sin conexión", timeout=10_000)
    await expect(page.locator("#curp")).to_have_text(doc["curp"])
    await page.screenshot(path=ARTIFACTS / "credencial-sin-conexion.png", full_page=True)

    # Back online with the session over (it lasts minutes): the saved card, and a way in.
    await context.set_offline(False)
    await context.clear_cookies()
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Su sesión terminó", timeout=10_000)
    await expect(page.locator("#curp")).to_have_text(doc["curp"])
    # Signing out on a shared phone forgets the saved card (Clear-Site-Data).
    await page.goto(f"{live_server}/entrar")
    await sign_in(page, "persona.e2e", None)
    await page.wait_for_url(f"{live_server}/credencial/")
    assert await page.evaluate("localStorage.getItem('salud.credencial')") is not None
    await page.locator("form.card-signout button").click()
    await page.wait_for_url("**/entrar")
    assert await page.evaluate("localStorage.getItem('salud.credencial')") is None

    # A browser that ignores Clear-Site-Data on a redirect (Firefox does): the page forgets
    # the card itself as the form leaves. Here the header is taken off the server's answer.
    async def without_clear_site_data(route: Route) -> None:
        answer = await route.fetch(max_redirects=0)
        kept = {k: v for k, v in answer.headers.items() if k.lower() != "clear-site-data"}
        await route.fulfill(response=answer, headers=kept)

    await sign_in(page, "persona.e2e", None)
    await page.wait_for_url(f"{live_server}/credencial/")
    await expect(page.locator("#curp")).to_have_text(doc["curp"])
    assert await page.evaluate("localStorage.getItem('salud.credencial')") is not None
    await page.route("**/salir", without_clear_site_data)
    await page.locator("form.card-signout button").click()
    await page.wait_for_url("**/entrar")
    assert await page.evaluate("localStorage.getItem('salud.credencial')") is None


pytestmark = pytest.mark.usefixtures("signing_key")


async def test_a_parent_opens_the_childs_digital_card_on_their_phone(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    live_server: str,
    browser: Browser,
) -> None:
    parent = await registered(client, birth_date="1987-09-10")
    child = await registered(client, birth_date=(today_mx() - timedelta(days=365 * 7)).isoformat())
    await issued(client, child["curp"])
    url = f"/api/v1/persons/{child['curp']}/guardians"
    reason = "acta de nacimiento"
    body = {"guardian_curp": parent["curp"], "relationship": "father", "reason": reason}
    assert (await client.post(url, json=body)).status_code == 201
    await account(sessions, settings, "papa.e2e", Role.CITIZEN, curp=parent["curp"])

    page = await (await browser.new_context(viewport={"width": 412, "height": 915})).new_page()
    await page.goto(f"{live_server}/credencial/menores")
    await page.wait_for_url("**/entrar**")
    await sign_in(page, "papa.e2e", None)
    await page.wait_for_url(f"{live_server}/credencial/menores")
    await page.locator("#wards a.ward-card").click()
    await page.wait_for_url(f"{live_server}/credencial/?de={child['curp']}")
    await expect(page.locator("#curp")).to_have_text(child["curp"], timeout=10_000)
    await expect(page.locator("#card-kind")).to_contain_text("Menor a su cargo")
    shot = await page.screenshot(path=ARTIFACTS / "credencial-de-un-menor.png", full_page=True)
    found = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(shot)))]
    async with httpx.AsyncClient(base_url=live_server) as web:
        keys = KeySet.from_jwks((await web.get("/.well-known/jwks.json")).json())
    assert [verify(t, keys).claims.holder.curp for t in found] == [child["curp"]]
    key = f"salud.credencial.{child['curp']}"
    assert await page.evaluate(f"localStorage.getItem('{key}')") is not None

    # The link ends: the next refresh says why and the copy on the phone is gone.
    ended = await client.post(f"{url}/{parent['curp']}/end", json={"reason": "resolución judicial"})
    assert ended.status_code == 200
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("no está vinculada", timeout=10_000)
    assert await page.evaluate(f"localStorage.getItem('{key}')") is None
    await expect(page.locator("#card")).to_be_hidden()
