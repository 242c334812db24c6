"""Citizen sign-in with OpenID Connect against a real provider on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from salud.app import create_app
from salud.config import Settings
from tests.conftest import TokenFor
from tests.factories.persons import person_doc
from tests.support.oidc_provider import Client, Person, Provider, running_provider

pytestmark = pytest.mark.db

CALLBACK = "http://test/api/v1/auth/oidc/callback"


@pytest.fixture
def citizen() -> dict[str, object]:
    return person_doc()


@pytest.fixture
def provider(citizen: dict[str, object]) -> Iterator[Provider]:
    person = Person(sub="llave-123", curp=str(citizen["curp"]))
    client = Client("salud-universal", "secreto-del-cliente-oidc", CALLBACK)
    with running_provider(person, client) as running:
        yield running


@pytest.fixture
async def app_client(
    provider: Provider, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(
        update={
            "oidc_issuer": provider.issuer,
            "oidc_client_id": "salud-universal",
            "oidc_client_secret": SecretStr("secreto-del-cliente-oidc"),
            "oidc_redirect_uri": CALLBACK,
        }
    )
    app = create_app(configured)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def _sign_in(
    app_client: httpx.AsyncClient, next_page: str | None = None
) -> tuple[httpx.Response, str, str]:
    """Play the browser: our login → the provider's authorize → back to our callback."""
    params = {"next": next_page} if next_page else None
    start = await app_client.get("/api/v1/auth/oidc/login", params=params)
    assert start.status_code == 307, start.text
    authorize = start.headers["location"]
    query = parse_qs(urlparse(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    async with httpx.AsyncClient() as browser:
        at_provider = await browser.get(authorize)
    assert at_provider.status_code == 302, at_provider.text
    back = parse_qs(urlparse(at_provider.headers["location"]).query)
    return start, back["code"][0], back["state"][0]


async def test_citizen_signs_in_and_reads_only_their_record(
    app_client: httpx.AsyncClient, citizen: dict[str, object], token_for: TokenFor
) -> None:
    staff = token_for(Role.SUPERVISOR)
    registered = await app_client.post("/api/v1/persons", json=citizen, headers=staff)
    assert registered.status_code == 201, registered.text
    _, code, state = await _sign_in(app_client)
    answer = await app_client.get(
        "/api/v1/auth/oidc/callback", params={"code": code, "state": state}
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    me = await app_client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "citizen"
    # The audit log's "who" names this person, not everyone sharing four letters.
    assert me.json()["username"] == f"ciudadano:{citizen['curp']}"
    own = await app_client.get(
        f"/api/v1/persons/{citizen['curp']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert own.status_code == 200
    assert own.json()["given_names"] == citizen["given_names"]
    other = await app_client.get(
        f"/api/v1/persons/{person_doc()['curp']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert other.status_code == 403


async def test_state_mismatch_and_replayed_code_are_refused(
    app_client: httpx.AsyncClient,
) -> None:
    _, code, state = await _sign_in(app_client)
    wrong = await app_client.get(
        "/api/v1/auth/oidc/callback", params={"code": code, "state": state + "x"}
    )
    assert wrong.status_code == 401
    accented = await app_client.get(
        "/api/v1/auth/oidc/callback", params={"code": code, "state": state[:-1] + "é"}
    )
    assert accented.status_code == 401  # not a 500
    ok = await app_client.get("/api/v1/auth/oidc/callback", params={"code": code, "state": state})
    assert ok.status_code == 200, ok.text
    # The flow cookie was cleared and the code is spent: a replay fails.
    app_client.cookies.clear()
    replay = await app_client.get(
        "/api/v1/auth/oidc/callback", params={"code": code, "state": state}
    )
    assert replay.status_code == 401


async def test_without_configuration_citizen_sign_in_is_503(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.get("/api/v1/auth/oidc/login")
    assert answer.status_code == 503


async def test_a_citizen_signs_in_to_the_web_pages_through_the_provider(
    app_client: httpx.AsyncClient, citizen: dict[str, object], token_for: TokenFor
) -> None:
    """The sign-in page's Llave MX button: the callback gives the browser the web session
    and goes back to the page asked for (a path of this site only)."""
    staff = token_for(Role.SUPERVISOR)
    assert (
        await app_client.post("/api/v1/persons", json=citizen, headers=staff)
    ).status_code == 201
    page = await app_client.get("/entrar", params={"next": "/credencial/"})
    assert 'id="llave"' in page.text
    assert "/api/v1/auth/oidc/login?next=/credencial/" in page.text
    app_client.cookies.clear()
    assert (await app_client.get("/credencial/datos")).status_code == 401
    _, code, state = await _sign_in(app_client, "/credencial/")
    back = await app_client.get("/api/v1/auth/oidc/callback", params={"code": code, "state": state})
    assert back.status_code == 303, back.text
    assert back.headers["location"] == "/credencial/"
    assert "salud_session=" in back.headers["set-cookie"]
    assert "samesite=lax" in back.headers["set-cookie"].lower()  # lands after a cross-site hop
    data = await app_client.get("/credencial/datos")
    assert data.status_code != 401, data.text  # signed in (no card issued yet: not a 401)
    # Anywhere else than a path of this site is ignored: the callback answers JSON.
    app_client.cookies.clear()
    _, code, state = await _sign_in(app_client, "/\\\\evil.example")
    elsewhere = await app_client.get(
        "/api/v1/auth/oidc/callback", params={"code": code, "state": state}
    )
    assert elsewhere.status_code == 200
    assert elsewhere.json()["role"] == "citizen"


async def test_a_failing_provider_is_a_503_never_a_500(settings: Settings) -> None:
    """The provider's outages and garbage (its keys answering 503, its token endpoint
    answering HTML) are 'sign-in unavailable', whichever step meets them."""
    from salud.access.oidc import OidcClient, OidcConfig, OidcUnavailable
    from salud.kit.sealing import Keyring

    issuer = "https://llave.example"

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("openid-configuration"):
            return httpx.Response(200, json={
                "issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks"})  # fmt: skip
        if path == "/token":
            return httpx.Response(200, text="<html>mantenimiento</html>")
        return httpx.Response(503, text="no disponible")

    ring = Keyring.from_config(settings.kek_id, settings.kek.get_secret_value())
    config = OidcConfig(issuer, "salud-universal", "secreto", CALLBACK)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = OidcClient(config, ring, http)
        _, cookie = await client.start()
        flow_state = client._flow(cookie)["s"]
        with pytest.raises(OidcUnavailable):  # the token endpoint's HTML
            await client.finish("codigo", flow_state, cookie)
        with pytest.raises(OidcUnavailable):  # the keys' 503
            await client._key_set(refresh=True)

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>no soy JSON</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(garbage)) as http:
        with pytest.raises(OidcUnavailable):  # the configuration itself
            await OidcClient(config, ring, http).start()

    def no_keys(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jwks":
            return httpx.Response(200, json={"keys": []})
        return answer(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(no_keys)) as http:
        with pytest.raises(OidcUnavailable):  # a key set that can verify nothing
            await OidcClient(config, ring, http)._key_set(refresh=True)


async def test_a_person_who_cancels_at_the_provider_is_told_so(
    app_client: httpx.AsyncClient,
) -> None:
    """RFC 6749 §4.1.2.1: the provider comes back with `error` and no code. A browser goes
    back to the sign-in page, which says why; an app gets a 401 naming the error. The flow's
    cookies go either way."""
    await app_client.get("/api/v1/auth/oidc/login", params={"next": "/credencial/"})
    cancelled = await app_client.get(
        "/api/v1/auth/oidc/callback", params={"error": "access_denied", "state": "s"}
    )
    assert cancelled.status_code == 303, cancelled.text
    assert cancelled.headers["location"] == "/entrar?llave=cancelado"
    assert "salud_oidc=" in cancelled.headers["set-cookie"]  # deleted
    page = await app_client.get(cancelled.headers["location"])
    assert "Se canceló el inicio de sesión con Llave MX" in page.text
    app_client.cookies.clear()
    await app_client.get("/api/v1/auth/oidc/login")
    app = await app_client.get(
        "/api/v1/auth/oidc/callback", params={"error": "server_error", "state": "s"}
    )
    assert app.status_code == 401
    assert app.headers["content-type"] == "application/problem+json"
    assert "server_error" in app.json()["detail"]
