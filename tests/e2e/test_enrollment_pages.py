"""Credentialization end to end in Debian's Chromium: a supervisor opens a module, a citizen
books a slot, the operator enrolls them (documents, photo from the camera, fingerprints from
the scanner's files), the digital card works at once, and the plastic card is printed in a
batch, received at the module and delivered."""

from __future__ import annotations

import io
from datetime import timedelta

import httpx
import pyotp
import pypdfium2
import pytest
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import repository as accounts
from salud.access import service as access
from salud.access.permissions import Role
from salud.access.schemas import AccountCreate
from salud.config import Settings
from salud.identity.synth import synthetic_face, synthetic_fingerprint
from salud.kit.clock import today_mx
from tests.conftest import TokenFor, keyring_of
from tests.e2e.conftest import ARTIFACTS, FAKE_CAMERA
from tests.e2e.test_credential_pages import PASSWORD, write_y4m
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db
MODULE = "MR-13-0100"
E = "/api/v1/enrollment"


async def staff_account(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, username: str, role: Role,
    curp: str | None = None, module: str | None = None,
) -> str | None:  # fmt: skip
    """An account (a staff one bound to the module); its current TOTP code, or None."""
    ring = keyring_of(settings)
    async with sessions() as session, session.begin():
        await access.create_account(
            session,
            AccountCreate(username=username, display_name=username, role=role, password=PASSWORD,
                          institution_code=10, curp=curp, module_code=module,
                          totp=role is not Role.CITIZEN),
            ring,
        )  # fmt: skip
        found = await accounts.by_username(session, username)
        assert found is not None
        secret = access.totp_secret(found, ring)
    return pyotp.TOTP(secret).now() if secret else None


async def signed_in(
    browser: Browser, base: str, username: str, code: str | None, landing: str
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1000, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/entrar?next={landing}")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    if code:
        await page.fill("input[name=totp]", code)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}{landing}")
    return context, page


def png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


async def test_a_person_is_booked_enrolled_printed_and_handed_their_card(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings,
    live_server: str, browser: Browser, signing_key: str, token_for: TokenFor,
) -> None:  # fmt: skip
    base = live_server
    today = today_mx()
    until = (today + timedelta(days=60)).isoformat()
    # The ministry's set-up through the API: a phase for Hidalgo, the calendar, the module.
    ministry = token_for(Role.INSTITUTION_ADMIN)
    for path, body in (
        (f"{E}/phases", {"name": "Fase Hidalgo", "starts_on": today.isoformat(), "states": ["13"]}),
        (f"{E}/calendars", {"name": "general", "active": True, "rules": [
            {"starts_on": today.isoformat(), "ends_on": until}]}),
        (f"{E}/modules", {"code": MODULE, "name": "Módulo Pachuca Centro", "state": "13",
                          "address": "Plaza Juárez s/n, Centro, Pachuca", "weekdays": "1234567",
                          "supervisor": "supervisora.e2e", "daily_capacity": 50}),
    ):  # fmt: skip
        # The phase and the calendar are the ministry's (institution_admin); the module, a
        # supervisor's.
        who = ministry if not path.endswith("/modules") else {}
        made = await client.post(path, json=body, headers=who)
        assert made.status_code == 201, made.text
    supervisor_code = await staff_account(
        sessions, settings, "supervisora.e2e", Role.SUPERVISOR, module=MODULE
    )
    operator_code = await staff_account(
        sessions, settings, "operador.e2e", Role.REGISTRATION_OPERATOR, module=MODULE
    )
    doc = person_doc(first_surname="HERNÁNDEZ")
    curp = doc["curp"]
    await staff_account(sessions, settings, "ciudadana.e2e", Role.CITIZEN, curp=curp)

    # 1. The supervisor opens the module.
    ctx, page = await signed_in(browser, base, "supervisora.e2e", supervisor_code, "/modulo")
    await expect(page.locator("#module-status")).to_have_text("por abrir")
    await page.click("#open-module")
    await expect(page.locator("#module-status")).to_have_text("abierto")
    await page.screenshot(path=ARTIFACTS / "modulo-abierto.png", full_page=True)
    await ctx.close()

    # 2. The citizen books a slot with their CURP (no sign-in).
    ctx = await browser.new_context(viewport={"width": 412, "height": 915})
    page = await ctx.new_page()
    await page.goto(f"{base}/cita")
    await page.fill("input[name=curp]", curp)
    await page.select_option("select[name=state]", "13")
    await page.click("button[type=submit]")
    await page.select_option("select[name=module]", MODULE)
    await page.click("form[action='/cita'][method=get] button[type=submit]")
    first_day = page.locator(".days button").first
    await expect(first_day).to_be_visible()
    await first_day.click()
    await expect(page.locator("h1")).to_have_text("Cita agendada")
    folio = (await page.locator("#folio").inner_text()).strip()
    assert folio.startswith("C")
    await page.screenshot(path=ARTIFACTS / "cita-agendada.png", full_page=True)
    await ctx.close()

    # 3. The operator enrolls the person: registry data, documents, photo, fingerprints.
    ctx, page = await signed_in(browser, base, "operador.e2e", operator_code, "/modulo")
    await page.fill("#start input[name=curp]", curp)
    await page.click("#start button[type=submit]")
    await expect(page.locator("#error")).to_contain_text("no está en el padrón")
    await page.fill("input[name=given_names]", doc["given_names"])
    await page.fill("input[name=first_surname]", doc["first_surname"])
    await page.fill("input[name=second_surname]", doc["second_surname"])
    await page.select_option("select[name=address_state]", "13")
    await page.fill("input[name=address_municipality]", "048")
    await page.click("button:has-text('Comenzar el registro')")
    await expect(page.locator("#person-name")).to_contain_text(doc["given_names"])
    await expect(page.locator("#missing li")).to_have_count(5)
    for kind in ("photo_id", "curp", "address_proof"):
        await page.check(f"input[name=doc_{kind}]")
    await page.fill("input[name=date_address_proof]", (today - timedelta(days=40)).isoformat())
    await page.click("#documents button[type=submit]")
    await expect(page.locator("p[role=status]")).to_have_text("Documentos guardados.")
    # The photo from the (fake) camera: a drawn portrait in the middle of the frame.
    write_y4m(png(synthetic_face(5, (420, 560))), FAKE_CAMERA)
    await page.click("#camera")
    await expect(page.locator("#shoot")).to_be_visible(timeout=10_000)
    await page.wait_for_function("document.getElementById('video').videoWidth > 0")
    await page.click("#shoot")
    await expect(page.locator("p[role=status]")).to_have_text(
        "Fotografía guardada.", timeout=10_000
    )
    for finger in ("2", "7"):
        await page.select_option("#fingerprint select[name=finger]", finger)
        await page.set_input_files("#fingerprint input[name=image]", files=[{
            "name": f"dedo{finger}.png", "mimeType": "image/png",
            "buffer": synthetic_fingerprint(int(finger))}])  # fmt: skip
        await page.click("#fingerprint button[type=submit]")
        await expect(page.locator("p[role=status]")).to_contain_text("Huella del índice")
    await expect(page.locator("#ready")).to_be_visible()
    await page.screenshot(path=ARTIFACTS / "registro-completo.png", full_page=True)
    await page.click("#complete")
    await expect(page.locator("#receipt h1")).to_have_text("Comprobante de credencialización")
    pickup = (today + timedelta(days=28)).strftime("%d/%m/%Y")
    await expect(page.locator("#pickup")).to_contain_text(pickup)
    await page.screenshot(path=ARTIFACTS / "comprobante.png", full_page=True)

    # 4. The digital card works from the moment of enrollment.
    citizen, card_page = await signed_in(browser, base, "ciudadana.e2e", None, "/credencial/")
    await expect(card_page.locator("#card")).to_be_visible(timeout=10_000)
    await expect(card_page.locator("#curp")).to_have_text(curp)
    await card_page.screenshot(path=ARTIFACTS / "credencial-recien-registrada.png", full_page=True)
    await citizen.close()

    # 5. The card is printed in a batch, shipped, received at the module and delivered.
    await page.goto(f"{base}/modulo/lotes")
    await page.click("#new-batch")
    await expect(page.locator("#batch-status")).to_have_text("por imprimir")
    async with page.expect_download() as download_info:
        await page.click("#print-file")
    download = await download_info.value
    pdf_path = ARTIFACTS / "lote.pdf"
    await download.save_as(pdf_path)
    assert len(pypdfium2.PdfDocument(pdf_path)) == 2
    await page.reload()
    await expect(page.locator("#batch-status")).to_have_text("impreso")
    await page.click("#shipped")
    await expect(page.locator("#batch-status")).to_have_text("enviado")
    await page.click("#received")
    await expect(page.locator("#batch-status")).to_have_text("recibido")
    row = page.locator("tr[data-card]")
    await expect(row).to_contain_text("lista para entrega")
    await row.locator("select").select_option("photo_id")
    await row.locator("button").click()
    await expect(page.locator("p[role=status]")).to_have_text("Tarjeta entregada.")
    await expect(page.locator("tr[data-card]")).to_contain_text("entregada")
    await page.screenshot(path=ARTIFACTS / "lote-entregado.png", full_page=True)
    await ctx.close()

    cards = (await client.get(f"/api/v1/persons/{curp}/credentials")).json()
    assert [(c["status"], c["digital_active"]) for c in cards] == [("delivered", True)]
