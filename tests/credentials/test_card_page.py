"""The citizen's digital card page (card.js) in a browser: a card the server no longer gives
(suspended, revoked) leaves the phone; a server fault keeps the saved copy, as offline."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, Route, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.config import Settings
from tests.credentials.test_credentials_api import issued, registered
from tests.e2e.conftest import browser  # noqa: F401  (the Debian Chromium fixture)
from tests.e2e.test_credential_pages import account, sign_in

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key")]
SAVED = "localStorage.getItem('salud.credencial')"


async def test_a_suspended_card_leaves_the_phone_and_a_server_fault_does_not(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    live_server: str,
    browser: Browser,  # noqa: F811
) -> None:
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    await account(sessions, settings, "suspendida.e2e", Role.CITIZEN, curp=doc["curp"])
    page = await (await browser.new_context(viewport={"width": 412, "height": 915})).new_page()
    await page.goto(f"{live_server}/credencial/")
    await page.wait_for_url("**/entrar**")
    await sign_in(page, "suspendida.e2e", None)
    await page.wait_for_url(f"{live_server}/credencial/")
    await expect(page.locator("#curp")).to_have_text(doc["curp"], timeout=10_000)
    assert await page.evaluate(SAVED) is not None

    # A server fault is not the card's end: the saved card keeps showing, as offline.
    async def fault(route: Route) -> None:
        await route.fulfill(status=503, body="")

    await page.route("**/credencial/datos", fault)
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("Sin conexión", timeout=10_000)
    await expect(page.locator("#curp")).to_have_text(doc["curp"])
    await page.unroute("**/credencial/datos", fault)

    # Suspended: the server answers 404 with the reason; the phone forgets the card.
    status = f"/api/v1/credentials/{card['credential_id']}/status"
    assert (await client.post(status, json={"status": "suspended"})).status_code == 200
    await page.reload()
    await expect(page.locator("#status")).to_contain_text(
        "no tiene una credencial digital activa", timeout=10_000
    )
    await expect(page.locator("#card")).to_be_hidden()
    assert await page.evaluate(SAVED) is None


async def test_the_card_page_tells_no_entitlement_and_an_outdated_plastic(
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    live_server: str,
    browser: Browser,  # noqa: F811
) -> None:
    """A statement naming no institution reads "sin derechohabiencia vigente" (the identity
    still valid), not "derechohabiencia vigente al …" beside "Instituciones —"; after a
    change of the data the plastic prints, the page shows the registry's data and says the
    plastic is outdated, until a reissue with reason update."""
    doc = await registered(client, affiliations=[])
    await issued(client, doc["curp"])
    await account(sessions, settings, "sin.derechos.e2e", Role.CITIZEN, curp=doc["curp"])
    page = await (await browser.new_context(viewport={"width": 412, "height": 915})).new_page()
    await page.goto(f"{live_server}/credencial/")
    await page.wait_for_url("**/entrar**")
    await sign_in(page, "sin.derechos.e2e", None)
    await page.wait_for_url(f"{live_server}/credencial/")
    await expect(page.locator("#rights")).to_have_text("—", timeout=10_000)
    await expect(page.locator("#as-of")).to_contain_text("Sin derechohabiencia vigente al")
    await expect(page.locator("#as-of")).to_contain_text("la identidad sí es válida")
    await expect(page.locator("#outdated")).to_be_hidden()

    changed = await client.patch(
        f"/api/v1/persons/{doc['curp']}", json={"blood_type": "AB-", "reason": "corrección"},
        headers={"If-Match": 'W/"1"'},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    await page.reload()
    await expect(page.locator("#blood")).to_have_text("AB-", timeout=10_000)
    await expect(page.locator("#outdated")).to_be_visible()
    await expect(page.locator("#outdated")).to_contain_text("grupo sanguíneo")
    again = await client.post(
        f"/api/v1/persons/{doc['curp']}/credentials", json={"reason": "update"}
    )
    assert again.status_code == 201, again.text
    await page.reload()
    await expect(page.locator("#status")).to_contain_text("En línea", timeout=10_000)
    await expect(page.locator("#outdated")).to_be_hidden()
