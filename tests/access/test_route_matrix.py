"""Every route of the OpenAPI document: no credentials → 401; a role without the route's
permission → 403; and never a 200 with someone else's data for a citizen."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from salud.access.permissions import ROLE_PERMISSIONS, Permission, Role
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db

PUBLIC = "public"
ANY = "any"


async def _operations(client: httpx.AsyncClient) -> list[tuple[str, str, str]]:
    spec = (await client.get("/api/v1/openapi.json")).json()
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            permission = op.get("x-permission")
            assert permission, f"{method.upper()} {path} declares no x-permission"
            ops.append((method.upper(), path, permission))
    return ops


def _url(path: str, curp: str) -> str:
    if path.startswith("/api/v1/enrollment/"):
        batch = "/print-batches/" in path
        path = path.replace("{code}", "L09-ABCDEFGH" if batch else "MR-09-0001")
        path = path.replace("{folio}", "RABCDEFGH23").replace("{finger}", "2")
        path = path.replace("{review_id}", "1").replace("{name}", "demo")
    path = re.sub(r"\{folio\}", "ARCO-2026-0000001", path)
    path = re.sub(r"\{(consent_id|emergency_id|care_id)\}", "1", path)
    path = path.replace("{credential_id}", "aaaaaaaaaaaaaaaa").replace("{side}", "front")
    path = path.replace("{guardian_curp}", "GOMC850312HDFNRR09").replace("{version}", "1")
    return re.sub(r"\{curp\}", curp, re.sub(r"\{clues\}", "HGIMB000011", path))


# A valid body for each writing route: the permission is checked after the body is parsed,
# so a 403 must not hide behind a 422.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/persons/{curp}"): {"blood_type": "A+"},
    ("POST", "/api/v1/persons/{curp}/data-requests"): {
        "kind": "access",
        "description": "solicito mis datos",
    },
    ("POST", "/api/v1/data-requests/{folio}/answer"): {
        "decision": "denied",
        "answer": "respuesta de prueba",
    },
    ("POST", "/api/v1/persons/{curp}/care-relationships"): {"kind": "encounter"},
    ("POST", "/api/v1/care-relationships/{care_id}/review"): {"outcome": "justified"},
    ("POST", "/api/v1/persons/{curp}/consents"): {"institution_code": 3},
    ("POST", "/api/v1/persons/{curp}/consents/{consent_id}/revoke"): {},
    ("POST", "/api/v1/persons/{curp}/emergency-access"): {
        "reason": "paciente inconsciente en urgencias"
    },
    ("POST", "/api/v1/emergency-accesses/{emergency_id}/review"): {"outcome": "justified"},
    ("POST", "/api/v1/persons/{curp}/credentials"): {"reason": "first"},
    ("POST", "/api/v1/persons/{curp}/guardians"): {
        "guardian_curp": "GOMC850312HDFNRR09",
        "relationship": "mother",
        "reason": "acta de nacimiento",
    },
    ("POST", "/api/v1/persons/{curp}/guardians/{guardian_curp}/end"): {"reason": "por error"},
    ("POST", "/api/v1/credentials/{credential_id}/status"): {"status": "suspended"},
    ("POST", "/api/v1/credentials/validate"): {"qr": "NOT A CARD"},
    ("POST", "/api/v1/public/credentials/validate"): {"qr": "NOT A CARD"},
    ("POST", "/api/v1/signing-keys/rotate"): {},
    ("POST", "/api/v1/auth/sign-out"): {},
    ("PUT", "/api/v1/persons/{curp}/photo"): {},
    ("PUT", "/api/v1/persons/{curp}/record-restrictions"): {"categories": ["hiv"]},
    ("POST", "/api/v1/enrollment/modules"): {
        "code": "MR-09-0001",
        "name": "Módulo de prueba",
        "address": "Calle 1, Centro",
        "state": "09",
    },
    ("POST", "/api/v1/enrollment/modules/{code}/status"): {"status": "open"},
    ("POST", "/api/v1/enrollment/modules/{code}/staff"): {"username": "operador.demo"},
    ("POST", "/api/v1/enrollment/phases"): {
        "name": "Fase 1",
        "starts_on": "2026-01-01",
        "states": ["09"],
    },
    ("POST", "/api/v1/enrollment/calendars"): {
        "name": "demo",
        "rules": [{"starts_on": "2026-01-01", "ends_on": "2026-12-31"}],
    },
    ("POST", "/api/v1/enrollment/calendars/{name}/activate"): {},
    ("POST", "/api/v1/enrollment/enrollments"): {"curp": "GOMC850312HDFNRR09"},
    ("PUT", "/api/v1/enrollment/enrollments/{folio}/documents"): {"documents": []},
    ("PUT", "/api/v1/enrollment/enrollments/{folio}/photo"): {},
    ("PUT", "/api/v1/enrollment/enrollments/{folio}/fingerprints/{finger}"): {},
    ("POST", "/api/v1/enrollment/enrollments/{folio}/exception"): {
        "waive": ["address_proof"],
        "reason": "damnificado por inundación, sin comprobante",
    },
    ("POST", "/api/v1/enrollment/enrollments/{folio}/complete"): {},
    ("POST", "/api/v1/enrollment/enrollments/{folio}/cancel"): {
        "reason": "CURP capturada por error"
    },
    ("POST", "/api/v1/enrollment/reviews/{review_id}"): {"decision": "distinct"},
    ("POST", "/api/v1/enrollment/print-batches"): {"module_code": "MR-09-0001"},
    ("POST", "/api/v1/enrollment/print-batches/{code}/print-file"): {},
    ("POST", "/api/v1/enrollment/print-batches/{code}/status"): {"status": "shipped"},
    ("POST", "/api/v1/enrollment/cards/{credential_id}/delivery"): {"identity_check": "photo_id"},
}


# Valid query strings where a route requires parameters (checked before the permission).
QUERIES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/api/v1/facilities/nearest"): {"lat": 20.1, "lng": -98.7},
}


def _body(method: str, path: str) -> dict[str, Any] | None:
    if (method, path) == ("POST", "/api/v1/persons"):
        return person_doc()
    if method in ("POST", "PATCH", "PUT"):
        assert (method, path) in BODIES, f"add a valid body for {method} {path}"
        return BODIES[(method, path)]
    return None


async def test_every_route_declares_a_known_permission(client: httpx.AsyncClient) -> None:
    known = {p.value for p in Permission} | {PUBLIC, ANY}
    for method, path, permission in await _operations(client):
        assert permission in known, (method, path, permission)


async def test_without_credentials_every_protected_route_is_401(
    anonymous: httpx.AsyncClient,
) -> None:
    curp = person_doc()["curp"]
    checked = 0
    for method, path, permission in await _operations(anonymous):
        if permission == PUBLIC:
            continue
        answer = await anonymous.request(
            method, _url(path, curp), json=_body(method, path), headers={"If-Match": 'W/"1"'}
        )
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        checked += 1
    assert checked >= 8


async def test_a_role_without_the_permission_gets_403(
    anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = person_doc()["curp"]
    checked = 0
    for method, path, permission in await _operations(anonymous):
        if permission in (PUBLIC, ANY):
            continue
        lacking = [
            r for r, perms in ROLE_PERMISSIONS.items() if Permission(permission) not in perms
        ]
        for role in lacking:
            answer = await anonymous.request(
                method,
                _url(path, curp),
                json=_body(method, path),
                params=QUERIES.get((method, path)),
                headers={**token_for(role), "If-Match": 'W/"1"'},
            )
            assert answer.status_code == 403, (method, path, role, answer.text)
            checked += 1
    assert checked >= 20


async def test_a_citizen_reads_only_their_own_record(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    mine, theirs = person_doc(), person_doc()
    for doc in (mine, theirs):
        assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    me = token_for(Role.CITIZEN, curp=mine["curp"])
    own = await anonymous.get(f"/api/v1/persons/{mine['curp']}", headers=me)
    assert own.status_code == 200
    other = await anonymous.get(f"/api/v1/persons/{theirs['curp']}", headers=me)
    assert other.status_code == 403
    assert theirs["given_names"] not in other.text
    assert "birth_date" not in other.text


# Routes a clinician may use for anybody: they create the basis itself (recorded, reviewed).
_OPENS_A_BASIS = {
    ("POST", "/api/v1/persons/{curp}/care-relationships"),
    ("POST", "/api/v1/persons/{curp}/emergency-access"),
}


async def test_no_route_hands_someone_elses_data_to_a_citizen_or_a_clinician_without_basis(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Every route that takes a CURP, called for a registered person who is not the caller:
    a citizen (with their own CURP) and a clinician with no care, consent or emergency access
    for that person never get a 2xx, whatever their role's permissions cover, and the
    answer never carries the person's name."""
    mine, theirs = person_doc(), person_doc()
    for doc in (mine, theirs):
        assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    callers = {
        Role.CITIZEN: token_for(Role.CITIZEN, curp=mine["curp"]),
        Role.CLINICIAN: token_for(Role.CLINICIAN, clues="HGIMB000011", username="sin.relacion"),
    }
    checked = 0
    for method, path, permission in await _operations(anonymous):
        if "{curp}" not in path or permission in (PUBLIC, ANY):
            continue
        for role, headers in callers.items():
            if Permission(permission) not in ROLE_PERMISSIONS[role]:
                continue  # the 403 of the role itself: the test above
            if role is Role.CLINICIAN and (method, path) in _OPENS_A_BASIS:
                continue
            answer = await anonymous.request(
                method, _url(path, theirs["curp"]), json=_body(method, path),
                params=QUERIES.get((method, path)), headers={**headers, "If-Match": 'W/"1"'},
            )  # fmt: skip
            assert not answer.is_success, (method, path, role, answer.text)
            assert theirs["given_names"] not in answer.text, (method, path, role)
            checked += 1
    assert checked >= 15


async def test_a_forged_or_malformed_token_is_401(anonymous: httpx.AsyncClient) -> None:
    for header in ("Bearer abc.def.ghi", "Basic dXNlcjpwYXNz", "Bearer "):
        answer = await anonymous.get("/api/v1/auth/me", headers={"Authorization": header})
        assert answer.status_code == 401, header


# --- the FHIR API (outside the OpenAPI document: its routes are enumerated from the app) ------

# Only the CapabilityStatement is public (FHIR: a client reads it before signing in).
FHIR_PUBLIC = {("GET", "/fhir/metadata")}
# Signed-in callers only, and they disclose nothing about anybody: checking a resource.
FHIR_ANY = {("POST", "/fhir/{kind}/$validate")}


def _fhir_url(path: str, curp: str) -> str:
    path = path.replace("{kind:fhirtype}", "Condition").replace("{fhir_id:fhirid}", "x1")
    path = path.replace("{kind}", "Condition").replace("{fhir_id}", "x1")
    path = path.replace("{version_id}", "1").replace("{curp}", curp)
    path = path.replace("{job_id}", "0123abcd").replace("{name}", "Condition.ndjson")
    return path.replace("{seq}", "1")


async def test_every_fhir_route_needs_credentials_and_a_permission(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Every FHIR route: 401 (an OperationOutcome, WWW-Authenticate) without credentials, and
    never a 2xx for a role that holds no permission over the record (a system administrator:
    accounts and keys only)."""
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    from salud.api import fhir, fhir_bulk

    every = [*fhir.fast_routes(), *fhir.router.routes, *fhir_bulk.router.routes]
    routes = sorted(
        {
            (method, route.path)
            for route in every
            for method in getattr(route, "methods", None) or ()
            if method not in ("HEAD", "OPTIONS")
        }
    )
    assert all(path.startswith("/fhir") for _, path in routes)
    assert len(routes) >= 20, routes
    admin = token_for(Role.SYSTEM_ADMIN)
    body = {"resourceType": "Condition"}
    for method, path in routes:
        url = _fhir_url(path, doc["curp"])
        headers = {"Authorization": "", "Prefer": "respond-async"}
        bare = await anonymous.request(method, url, headers=headers, json=body)
        if (method, path) in FHIR_PUBLIC:
            assert bare.status_code == 200, (method, path)
            continue
        if bare.status_code == 405:  # a write to the read-only log: refused for everybody
            continue
        assert bare.status_code == 401, (method, path, bare.status_code, bare.text[:200])
        assert bare.headers["www-authenticate"].startswith("Bearer"), (method, path)
        assert bare.json()["resourceType"] == "OperationOutcome", (method, path)
        signed = await anonymous.request(method, url, headers={**admin, "Prefer": "respond-async"},
                                         json=body)  # fmt: skip
        if (method, path) in FHIR_ANY:
            continue
        assert signed.status_code in (400, 403, 404, 405, 415), (method, path, signed.status_code)
