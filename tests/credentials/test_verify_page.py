"""The reception page `/verificar` in a browser: a valid card whose printed data the
registry has changed since its issuance says so, with the fields and what to do."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.config import Settings
from tests.credentials.test_credentials_api import back_of, issued, registered, signed_qr_of
from tests.e2e.conftest import ARTIFACTS, browser  # noqa: F401 (the Chromium fixture)
from tests.e2e.test_credential_pages import account, sign_in

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key")]


async def test_reception_sees_that_a_valid_card_is_outdated(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    live_server: str,
    browser: Browser,  # noqa: F811
) -> None:
    """The page printed the message only for an invalid card and never read `outdated`:
    a plastic with the old blood type passed as plainly valid."""
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    qr = signed_qr_of(await back_of(client, card["credential_id"]))
    code = await account(sessions, settings, "recepcion.desact", Role.VERIFIER)
    page = await (await browser.new_context(viewport={"width": 412, "height": 900})).new_page()
    await page.goto(f"{live_server}/verificar")
    await sign_in(page, "recepcion.desact", code)
    await page.wait_for_url(f"{live_server}/verificar")

    # Up to date: valid, and no note.
    await page.fill("#qr", qr)
    await page.click("#manual button[type=submit]")
    await expect(page.locator("#verdict")).to_have_text("Credencial válida", timeout=10_000)
    await expect(page.locator("#outdated")).to_be_hidden()

    changed = await client.patch(
        f"/api/v1/persons/{doc['curp']}",
        json={"blood_type": "AB-", "reason": "corrección del grupo sanguíneo"},
        headers={"If-Match": 'W/"1"'},
    )
    assert changed.status_code == 200, changed.text
    await page.fill("#qr", qr)
    await page.click("#manual button[type=submit]")
    note = page.locator("#outdated")
    await expect(note).to_be_visible(timeout=10_000)
    await expect(page.locator("#verdict")).to_have_text("Credencial válida")
    await expect(page.locator("#outdated-fields")).to_have_text("grupo sanguíneo")
    await expect(note).to_contain_text("Tarjeta desactualizada")
    await expect(note).to_contain_text("motivo actualización (update)")
    await page.screenshot(path=ARTIFACTS / "verificador-desactualizada.png", full_page=True)

    # A card refused afterwards does not keep the note of the one before.
    await page.fill("#qr", qr[:40] + ("0" if qr[40] != "0" else "1") + qr[41:])
    await page.click("#manual button[type=submit]")
    await expect(page.locator("#verdict")).to_contain_text("NO válida", timeout=10_000)
    await expect(note).to_be_hidden()
