"""Page sessions: renewed while used (an operator's working day is not cut every 15
minutes), never beyond the day's limit, and a form sent after its session ended leads to
signing in again and back to the page, not to a JSON error."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from salud.access import tokens as tokens_module
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.kit.clock import utcnow

pytestmark = pytest.mark.db

VERIFIER = Principal("account:7", "recepcion.web", Role.VERIFIER, 3)


def _service(anonymous: httpx.AsyncClient) -> TokenService:
    app: Any = anonymous._transport.app  # type: ignore[attr-defined]
    service: TokenService = app.state.tokens
    return service


def _issued_ago(
    service: TokenService, seconds: int, monkeypatch: pytest.MonkeyPatch, **kw: Any
) -> str:
    """A session token issued `seconds` ago (its life is then that much shorter)."""
    with monkeypatch.context() as m:
        m.setattr(tokens_module, "utcnow", lambda: utcnow() - timedelta(seconds=seconds))
        return service.issue(VERIFIER, **kw)


def _fresh_cookie(answer: httpx.Response) -> str | None:
    for value in answer.headers.get_list("set-cookie"):
        found = re.match(r"salud_session=([^;]+)", value)
        if found:
            return found.group(1)
    return None


def _csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def test_a_session_in_use_is_renewed_and_its_forms_still_work(
    anonymous: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(anonymous)
    young = service.issue(VERIFIER, page=True)
    anonymous.cookies.set("salud_session", young)
    page = await anonymous.get("/verificar")
    assert page.status_code == 200
    assert _fresh_cookie(page) is None  # early in its life: nothing to renew
    form_token = _csrf_of(page)
    # Twelve minutes later (the last third of 15): the next page request renews it.
    old = _issued_ago(
        service, 12 * 60, monkeypatch, session=("s-1", int(time.time()) - 720), page=True
    )
    anonymous.cookies.set("salud_session", old)
    page = await anonymous.get("/verificar")
    form_token = _csrf_of(page)
    fresh = _fresh_cookie(page)
    assert fresh is not None
    assert service.seen(fresh).sid == service.seen(old).sid == "s-1"
    assert service.seen(fresh).expires > service.seen(old).expires
    assert "httponly" in page.headers["set-cookie"].lower()
    anonymous.cookies.set("salud_session", fresh)
    # The page's CSRF token was given in the same session (same id): still good.
    checked = await anonymous.post(
        "/verificar/texto", json={"qr": "NO ES"}, headers={"X-CSRF-Token": form_token}
    )
    assert checked.status_code == 200, checked.text
    # The API is not a page: its bearer tokens are never renewed this way.
    api = await anonymous.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {old}"})
    assert api.status_code == 200
    assert _fresh_cookie(api) is None
    # Nor is a token that was not given to a page's sign-in (an app's, a machine client's),
    # put in the cookie: it would live on past its 15 minutes.
    bearer = _issued_ago(service, 12 * 60, monkeypatch)
    anonymous.cookies.clear()
    anonymous.cookies.set("salud_session", bearer)
    assert _fresh_cookie(await anonymous.get("/static/no-existe.css")) is None
    assert _fresh_cookie(await anonymous.get("/verificar")) is None


async def test_a_session_ends_at_the_days_limit(
    anonymous: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(anonymous)
    day_old = int(time.time()) - 13 * 3600  # signed in 13 h ago (the limit is 12)
    old = _issued_ago(service, 12 * 60, monkeypatch, session=("s-2", day_old), page=True)
    anonymous.cookies.set("salud_session", old)
    page = await anonymous.get("/verificar")
    assert page.status_code == 200  # still valid for its last minutes...
    assert _fresh_cookie(page) is None  # ...but not renewed


async def test_a_form_sent_after_the_session_ended_goes_to_sign_in(
    anonymous: httpx.AsyncClient,
) -> None:
    service = _service(anonymous)
    anonymous.cookies.set("salud_session", service.issue(VERIFIER, page=True))
    page = await anonymous.get("/verificar")
    form_token = _csrf_of(page)
    anonymous.cookies.delete("salud_session")  # the browser dropped it: 15 minutes idle
    sent = await anonymous.post(  # a page's form (a citizen's reissue, say)
        "/credencial/reposicion",
        data={"csrf": form_token},
        headers={"Accept": "text/html", "Referer": "http://test/verificar"},
    )
    assert sent.status_code == 303
    assert sent.headers["location"] == "/entrar?next=%2Fverificar&sesion=terminada"
    script = await anonymous.post(
        "/verificar/texto", json={"qr": "NO ES"}, headers={"X-CSRF-Token": form_token}
    )
    assert script.status_code == 401
    assert script.headers["content-type"] == "application/problem+json"
    # Another site's page is not where the person is sent back to.
    elsewhere = await anonymous.post(
        "/credencial/reposicion",
        data={"csrf": form_token},
        headers={"Accept": "text/html", "Referer": "https://evil.example/verificar"},
    )
    assert elsewhere.headers["location"] == "/entrar?next=%2F&sesion=terminada"
    signin = await anonymous.get(sent.headers["location"])
    assert "Su sesión terminó" in signin.text
    assert 'value="/verificar"' in signin.text  # back there after signing in
