"""Machine clients: OAuth2 client credentials with SMART scopes, and what they grant."""

from __future__ import annotations

import httpx
import pyotp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import clients
from salud.access.permissions import Permission
from salud.access.scopes import allows, check_scope, permissions_for
from salud.config import Settings
from salud.errors import InvalidInput
from tests.access.test_sign_in import PASSWORD, _staff
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db


def test_scopes_map_to_permissions() -> None:
    assert permissions_for(frozenset({"system/Patient.read"})) == {
        Permission.PERSON_READ,
        Permission.PERSON_SEARCH,
    }
    assert Permission.PERSON_UPDATE in permissions_for(frozenset({"user/Patient.write"}))
    assert Permission.FACILITY_READ in permissions_for(frozenset({"system/*.read"}))
    assert permissions_for(frozenset({"system/Observation.read"})) == {Permission.RECORD_READ}
    assert permissions_for(frozenset({"user/Observation.write"})) == {Permission.RECORD_WRITE}
    assert allows(frozenset({"system/Observation.read"}), "Observation", write=False)
    assert not allows(frozenset({"system/Observation.read"}), "Condition", write=False)
    assert not allows(frozenset({"system/Observation.read"}), "Observation", write=True)
    assert allows(frozenset({"system/*.*"}), "Condition", write=True)
    # A system signs in with its own credentials: no person (patient/) and no user (user/),
    # whose scopes would bound a signed-in user's reach (user/Patient.read read anyone).
    for bad in ("Patient.read", "system/patient.read", "patient/*.read", "system/Foo.read",
                "user/Patient.read", "user/*.read"):  # fmt: skip
        assert check_scope(bad), bad
    # The audit log is granted only by a scope that names it: the wildcard asked for
    # $export (system/*.read) read the whole country's log.
    assert Permission.AUDIT_READ not in permissions_for(frozenset({"system/*.read"}))
    assert Permission.AUDIT_READ not in permissions_for(frozenset({"system/*.*"}))
    assert Permission.AUDIT_READ in permissions_for(frozenset({"system/AuditEvent.read"}))


async def _client(
    sessions: async_sessionmaker[AsyncSession], scopes: list[str]
) -> clients.NewClient:
    async with sessions() as session, session.begin():
        return await clients.register(session, "HIS Hospital General", scopes, 2, "HGIMS000010")


async def test_client_credentials_grant_and_scope_limits(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    his = await _client(sessions, ["system/Patient.read", "system/Location.read"])
    answer = await anonymous.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "system/Patient.read"},
        auth=(his.client_id, his.client_secret),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == "system/Patient.read"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    read = await anonymous.get(f"/api/v1/persons/{doc['curp']}", headers=headers)
    assert read.status_code == 200
    write = await anonymous.patch(
        f"/api/v1/persons/{doc['curp']}",
        json={"blood_type": "A+"},
        headers={**headers, "If-Match": 'W/"1"'},
    )
    assert write.status_code == 403
    units = await anonymous.get("/api/v1/facilities/HGIMB000011", headers=headers)
    assert units.status_code == 403  # Location.read was granted but not requested


async def test_oauth_errors_follow_rfc_6749(
    anonymous: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    his = await _client(sessions, ["system/Patient.read"])
    wrong = await anonymous.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(his.client_id, "no-es-el-secreto"),
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in wrong.headers
    beyond = await anonymous.post(
        "/api/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/Patient.write",
            "client_id": his.client_id,
            "client_secret": his.client_secret,
        },
    )
    assert beyond.status_code == 400
    assert beyond.json()["error"] == "invalid_scope"
    grant = await anonymous.post(
        "/api/v1/oauth/token", data={"grant_type": "password"}, auth=("a", "b")
    )
    assert grant.json()["error"] == "unsupported_grant_type"
    for body in ({"scope": "system/Patient.read"}, None):  # no grant_type; not a form at all
        missing = await anonymous.post(
            "/api/v1/oauth/token", data=body, auth=(his.client_id, his.client_secret)
        )
        assert missing.status_code == 400, missing.text
        assert missing.json()["error"] == "invalid_request"


async def test_registration_refuses_bad_scopes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        with pytest.raises(InvalidInput) as bad:
            await clients.register(session, "x", ["todo"])
        assert bad.value.problems[0].field == "scopes"


async def test_a_coverage_scope_does_not_open_the_registry(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """system/Coverage.read reads the person's Coverage (which needs person:read), but the
    registry's own API answers only to the Patient scopes; Coverage.write grants nothing."""
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    curp = doc["curp"]
    payer = await _client(sessions, ["system/Coverage.read", "system/Coverage.write"])
    answer = await anonymous.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(payer.client_id, payer.client_secret),
    )
    assert answer.status_code == 200, answer.text
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    coverage = await anonymous.get(f"/fhir/Coverage?patient={curp}", headers=headers)
    assert coverage.status_code == 200, coverage.text
    assert coverage.json()["total"] == 1
    refused = await anonymous.get(f"/api/v1/persons/{curp}", headers=headers)
    assert refused.status_code == 403
    assert "Patient" in refused.text
    found = await anonymous.get("/api/v1/persons", params={"curp": curp}, headers=headers)
    assert found.status_code == 403
    change = await anonymous.patch(
        f"/api/v1/persons/{curp}", json={"blood_type": "A+"},
        headers={**headers, "If-Match": 'W/"1"'},
    )  # fmt: skip
    assert change.status_code == 403
    assert (await anonymous.get(f"/fhir/Patient/{curp}", headers=headers)).status_code == 403


async def test_a_write_scope_alone_does_not_read_through_a_change(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A PATCH answers the whole record (and a stale If-Match the current version): a client
    with system/Patient.write but no read scope read any record through it."""
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    curp = doc["curp"]

    async def token(scopes: list[str]) -> dict[str, str]:
        made = await _client(sessions, scopes)
        answer = await anonymous.post(
            "/api/v1/oauth/token", data={"grant_type": "client_credentials"},
            auth=(made.client_id, made.client_secret),
        )  # fmt: skip
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    change = {"blood_type": "A+", "reason": "corrección del laboratorio"}
    writer = await token(["system/Patient.write"])
    for version in ('W/"1"', 'W/"9"'):
        refused = await anonymous.patch(
            f"/api/v1/persons/{curp}", json=change, headers={**writer, "If-Match": version}
        )
        assert refused.status_code == 403, refused.text
        assert doc["given_names"] not in refused.text
        assert "versión actual" not in refused.text
    both = await token(["system/Patient.read", "system/Patient.write"])
    done = await anonymous.patch(
        f"/api/v1/persons/{curp}", json=change, headers={**both, "If-Match": 'W/"1"'}
    )
    assert done.status_code == 200, done.text


async def test_limits_count_failures_and_keep_clients_and_staff_apart(
    anonymous: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A hospital system and the staff behind the same address: tokens handed out are not
    attempts to guess, and a client's wrong secrets do not lock the staff's sign-in."""
    his = await _client(sessions, ["system/Patient.read"])
    secret = await _staff(sessions, settings)
    form = {"grant_type": "client_credentials"}
    for _ in range(21):
        ok = await anonymous.post(
            "/api/v1/oauth/token", data=form, auth=(his.client_id, his.client_secret)
        )
        assert ok.status_code == 200, ok.text
    wrong = [
        (await anonymous.post("/api/v1/oauth/token", data=form, auth=(his.client_id, "x")))
        for _ in range(21)
    ]
    assert [w.status_code for w in wrong] == [401] * 20 + [429]
    assert wrong[-1].json()["error"] == "slow_down"
    assert int(wrong[-1].headers["retry-after"]) >= 1
    staff = {"username": "ana.operadora", "password": PASSWORD, "totp": pyotp.TOTP(secret).now()}
    assert (await anonymous.post("/api/v1/auth/token", json=staff)).status_code == 200
