"""The credential end to end over the API: issue, render, scan the rendered card (zxing-cpp),
verify with the published keys, validate at reception, reissue, revoke, rotate keys."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import claim169
import httpx
import orjson
import pypdfium2
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.app import create_app
from salud.config import Settings
from salud.credentials import service as credentials_service
from salud.credentials import signing
from salud.credentials.keyset import KeySet
from salud.credentials.schemas import IssueReason
from salud.credentials.verify import offline_verdict, verify
from salud.identity.synth import synthetic_face
from tests.conftest import TokenFor
from tests.factories.persons import person_doc

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key")]


def scan(image: Image.Image) -> list[str]:
    """Every QR zxing-cpp finds in the image, as text."""
    return [
        r.text for r in zxingcpp.read_barcodes(image) if r.format == zxingcpp.BarcodeFormat.QRCode
    ]


def signed_qr_of(image: Image.Image) -> str:
    found = [t for t in scan(image) if not t.startswith("HTTP")]
    assert len(found) == 1, found
    return found[0]


async def registered(client: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    doc = person_doc(**kw)
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    photo = await client.put(
        f"/api/v1/persons/{doc['curp']}/photo", content=synthetic_face(7),
        headers={"Content-Type": "image/jpeg"},
    )  # fmt: skip
    assert photo.status_code == 204, photo.text
    return doc


async def issued(client: httpx.AsyncClient, curp: str, reason: str = "first") -> dict[str, Any]:
    """A card for the person: a reissue through the API; a first card as an enrollment's
    completion issues it (the API refuses a first card apart from an enrollment)."""
    if reason != "first":
        answer = await client.post(f"/api/v1/persons/{curp}/credentials", json={"reason": reason})
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body
    app = client._transport.app  # type: ignore[attr-defined]
    who = Principal("account:modulo", "operador.modulo", Role.REGISTRATION_OPERATOR, 10)
    async with app.state.sessions() as session, session.begin():
        card = await credentials_service.issue(
            session, app.state.signer, app.state.keyring, app.state.credential_config, curp,
            IssueReason.FIRST, Caller(who, app.state.audit, "registro"), enrolled=True,
        )  # fmt: skip
    first: dict[str, Any] = orjson.loads(card.model_dump_json())
    return first


async def print_file_of(client: httpx.AsyncClient, credential_ids: list[str]) -> bytes:
    """The print file of these cards as a print batch has it made (enrollment/printing.py
    calls this service; the API has no route of its own for it)."""
    app = client._transport.app  # type: ignore[attr-defined]
    who = Principal("account:imprenta", "imprenta.lote", Role.SUPERVISOR, 10)
    async with app.state.sessions() as session, session.begin():
        return await credentials_service.print_file(
            session, app.state.keyring, app.state.credential_config, credential_ids,
            Caller(who, app.state.audit, "impresion"),
        )  # fmt: skip


async def back_of(client: httpx.AsyncClient, credential_id: str) -> Image.Image:
    answer = await client.get(f"/api/v1/credentials/{credential_id}/card/back")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(answer.content))


async def published(client: httpx.AsyncClient) -> KeySet:
    jwks = KeySet.from_jwks((await client.get("/.well-known/jwks.json")).json())
    cose = await client.get("/.well-known/cose-keys")
    assert cose.headers["content-type"] == "application/cose-key-set"
    assert KeySet.from_cose(cose.content).keys == jwks.keys
    return jwks


async def validate(client: httpx.AsyncClient, token_for: TokenFor, qr: str) -> dict[str, Any]:
    answer = await client.post(
        "/api/v1/credentials/validate", json={"qr": qr}, headers=token_for(Role.VERIFIER)
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_printed_card_scans_verifies_and_validates(
    client: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    assert card["status"] == "issued"
    assert card["digital_active"]
    assert card["sequence"] == 1
    front = await client.get(f"/api/v1/credentials/{card['credential_id']}/card/front")
    assert Image.open(io.BytesIO(front.content)).size == (1011, 638)
    back = await back_of(client, card["credential_id"])
    assert back.size == (1011, 638)
    texts = scan(back)
    assert len(texts) == 2, texts
    qr = signed_qr_of(back)
    link = next(t for t in texts if t.startswith("HTTP"))
    assert "/U/" in link
    assert doc["curp"] not in link
    keys = await published(client)
    verified = verify(qr, keys)
    assert verified.claims.holder.curp == doc["curp"]
    assert verified.claims.sequence == 1
    assert offline_verdict(verified) == ("valid", None)
    # An independent implementation verifies it with the published key.
    public = next(iter(keys.keys.values())).public
    assert claim169.decode_with_ed25519(qr, public).claim169.id == doc["curp"]

    answer = await validate(client, token_for, qr)
    assert answer["verdict"] == "valid"
    assert answer["card"] == "current", answer
    assert answer["holder"]["curp"] == doc["curp"]
    assert answer["photo"].startswith("data:image/jpeg;base64,")
    assert [e["institution_code"] for e in answer["entitlements"]] == [
        a["institution_code"] for a in doc["affiliations"]
    ]
    # The validation is in the person's "who looked at my data" view.
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    log = await client.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=me)
    assert log.status_code == 200, log.text
    assert any(e["action"] == "credentials:card:validate" for e in log.json()["items"])

    # The print file (a print batch's): two pages per card; its back page scans to the same QR.
    document = pypdfium2.PdfDocument(await print_file_of(client, [card["credential_id"]]))
    assert len(document) == 2
    width, height = document[1].get_size()
    assert round(width / 72 * 25.4, 1) == 85.6
    assert round(height / 72 * 25.4, 1) == 54.0
    page = document[1].render(scale=300 / 72).to_pil()
    assert signed_qr_of(page) == qr
    listed = (await client.get(f"/api/v1/persons/{doc['curp']}/credentials")).json()
    assert listed[0]["status"] == "printed"
    # Photos are sealed at rest: no JPEG in the table.
    async with sessions() as session:
        stored = (await session.execute(text("SELECT image_sealed FROM person_photos"))).scalar()
    assert stored is not None
    assert b"\xff\xd8\xff" not in bytes(stored)[:64]


async def test_reissue_after_loss_voids_every_earlier_card(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await registered(client)
    first = await issued(client, doc["curp"])
    old_qr = signed_qr_of(await back_of(client, first["credential_id"]))
    again = await client.post(f"/api/v1/persons/{doc['curp']}/credentials", json={})
    assert again.status_code == 409
    second = await issued(client, doc["curp"], "lost")
    assert second["sequence"] == 2
    third = await issued(client, doc["curp"], "damaged")
    new_qr = signed_qr_of(await back_of(client, third["credential_id"]))
    old = await validate(client, token_for, old_qr)
    assert old["verdict"] == "invalid"
    assert old["card"] == "superseded"
    assert old["reason"] == "superseded"
    assert (await validate(client, token_for, new_qr))["verdict"] == "valid"
    listed = (await client.get(f"/api/v1/persons/{doc['curp']}/credentials")).json()
    assert [c["status"] for c in listed] == ["superseded", "superseded", "issued"]
    assert listed[0]["superseded_by"] == second["credential_id"]


async def test_life_cycle_suspension_and_revocation(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    qr = signed_qr_of(await back_of(client, card["credential_id"]))
    url = f"/api/v1/credentials/{card['credential_id']}/status"
    operator = token_for(Role.REGISTRATION_OPERATOR)
    denied = await client.post(url, json={"status": "suspended"}, headers=operator)
    assert denied.status_code == 403
    assert (await client.post(url, json={"status": "suspended"})).json()["status"] == "suspended"
    answer = await validate(client, token_for, qr)
    assert answer["verdict"] == "invalid"
    assert answer["card"] == "suspended"
    back = await client.post(url, json={"status": "active"})
    assert back.json()["status"] == "issued"
    assert (await validate(client, token_for, qr))["verdict"] == "valid"
    assert (await client.post(url, json={"status": "revoked", "note": "fraude"})).status_code == 200
    assert (await validate(client, token_for, qr))["card"] == "revoked"
    final = await client.post(url, json={"status": "active"})
    assert final.status_code == 409


async def test_public_validation_says_only_valid_and_current(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    qr = signed_qr_of(await back_of(client, card["credential_id"]))
    answer = await anonymous.post("/api/v1/public/credentials/validate", json={"qr": qr})
    assert answer.status_code == 200
    assert answer.json() == {
        "verdict": "valid", "reason": None, "message": "Credencial válida y vigente.",
        "card": "current",
    }  # fmt: skip
    assert doc["curp"] not in answer.text
    assert doc["given_names"] not in answer.text
    # The holder sees that someone checked the card (anonymously, as the public endpoint is).
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    log = (await client.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=me)).json()
    checks = [e for e in log["items"] if e["action"] == "credentials:credential:public-validate"]
    assert [(e["actor"], e["outcome"]) for e in checks] == [("anonimo", "success")]
    tampered = qr[:-3] + ("A" if qr[-3] != "A" else "B") + qr[-2:]
    refused = await anonymous.post("/api/v1/public/credentials/validate", json={"qr": tampered})
    assert refused.json()["verdict"] == "invalid"
    empty = await anonymous.post("/api/v1/public/credentials/validate", json={"qr": ""})
    assert empty.status_code == 422
    assert "qr" in empty.text
    codes = [
        (await anonymous.post("/api/v1/public/credentials/validate", json={"qr": "X"})).status_code
        for _ in range(70)
    ]
    assert 429 in codes


async def test_the_digital_card_carries_a_fresh_entitlement_statement(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await registered(client)
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    none_yet = await anonymous.get("/api/v1/me/digital-card", headers=me)
    assert none_yet.status_code == 404
    card = await issued(client, doc["curp"])
    answer = await anonymous.get("/api/v1/me/digital-card", headers=me)
    assert answer.status_code == 200, answer.text
    digital = answer.json()
    assert digital["credential_id"] == card["credential_id"]
    assert digital["qr_svg"].startswith("<svg")
    keys = await published(anonymous)
    verified = verify(digital["qr"], keys)
    verdict, as_of = offline_verdict(verified)
    assert verdict == "valid_as_of"
    assert as_of is not None
    assert abs((as_of - datetime.now(UTC)).total_seconds()) < 60
    assert verified.claims.entitlement is not None
    assert list(verified.claims.entitlement.institutions) == [
        a["institution_code"] for a in doc["affiliations"]
    ]
    online = await validate(anonymous, token_for, digital["qr"])
    assert online["verdict"] == "valid_as_of"
    assert online["kind"] == "digital"
    # Lost card reported from the citizen's own page: the old digital card stops too.
    assert (await anonymous.post(
        f"/api/v1/persons/{doc['curp']}/credentials", json={"reason": "renewal"}, headers=me
    )).status_code == 403  # fmt: skip
    lost = await anonymous.post(
        f"/api/v1/persons/{doc['curp']}/credentials", json={"reason": "lost"}, headers=me
    )
    assert lost.status_code == 201
    assert (await validate(anonymous, token_for, digital["qr"]))["card"] == "superseded"
    other = person_doc()
    theirs = await anonymous.post(
        f"/api/v1/persons/{other['curp']}/credentials", json={"reason": "lost"}, headers=me
    )
    assert theirs.status_code == 403


async def test_key_rotation_leaves_old_cards_verifiable(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc, other = await registered(client), await registered(client)
    old = signed_qr_of(await back_of(client, (await issued(client, doc["curp"]))["credential_id"]))
    admin = token_for(Role.SYSTEM_ADMIN)
    assert (await client.post("/api/v1/signing-keys/rotate", json={})).status_code == 403
    rotated = await client.post("/api/v1/signing-keys/rotate", json={}, headers=admin)
    assert rotated.status_code == 201, rotated.text
    new = signed_qr_of(
        await back_of(client, (await issued(client, other["curp"]))["credential_id"])
    )
    keys = await published(client)
    assert len(keys.keys) == 2
    assert sorted(k.valid_to is None for k in keys.keys.values()) == [False, True]
    assert verify(old, keys).key.kid != verify(new, keys).key.kid
    for qr in (old, new):
        assert (await validate(client, token_for, qr))["verdict"] == "valid"


async def test_bad_photos_are_refused_with_the_reason(client: httpx.AsyncClient) -> None:
    doc = person_doc()
    await client.post("/api/v1/persons", json=doc)
    url = f"/api/v1/persons/{doc['curp']}/photo"
    for content, words in (
        (b"", "vacía"),
        (b"not an image", "legible"),
        (_png(100, 100), "240"),
        (_png(800, 400), "vertical"),
        (_png(300, 400), "contraste"),  # blank white
        (_png(300, 400, "black"), "contraste"),
        (_png(300, 400, noise=(0, 40)), "oscura"),  # a covered lens
        (_png(300, 400, noise=(215, 255)), "clara"),  # a flash into the camera
    ):
        answer = await client.put(url, content=content, headers={"Content-Type": "image/png"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == "photo"
        assert words in answer.text


async def test_a_photo_past_the_limit_is_not_read_to_its_end(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Whoever sends a photo (a citizen's session included), the server holds at most the
    limit in memory: 40 MB offered without a length, a little over 2 MB read, then a 422
    naming the photo; said with its length (10 MB), the same."""
    doc = person_doc()
    await client.post("/api/v1/persons", json=doc)
    sent = 0
    size = 40 << 20

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(size // 65_536):  # in chunks of 64 KB
            sent += 65_536
            yield b"\xff" * 65_536

    chunked = {"Content-Type": "image/jpeg"}
    answer = await client.put(
        f"/api/v1/persons/{doc['curp']}/photo", content=body(), headers=chunked
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "photo"
    assert "pesa más" in answer.text
    assert sent < 3_000_000
    # Whom may not change the photo gets the 403, also without reading it all.
    sent = 0
    other = token_for(Role.CITIZEN, curp=person_doc()["curp"])
    refused = await anonymous.put(
        f"/api/v1/persons/{doc['curp']}/photo", content=body(), headers={**chunked, **other}
    )
    assert refused.status_code == 403
    assert sent < 3_000_000


def _png(
    width: int, height: int, colour: str = "white", noise: tuple[int, int] | None = None
) -> bytes:
    """A plain image, or wide grey stripes of two levels (contrast, but no light)."""
    out = io.BytesIO()
    image = Image.new("RGB", (width, height), colour)
    if noise is not None:
        row = bytes(noise[(x // 30) % 2] for x in range(width))
        image = Image.frombytes("L", (width, height), row * height).convert("RGB")
    image.save(out, "PNG")
    return out.getvalue()


def test_a_drawn_portrait_passes_the_light_checks() -> None:
    from salud.identity.photos import check_photo
    from salud.identity.synth import synthetic_face

    for seed in range(20):
        assert check_photo(synthetic_face(seed)).width == 300


@pytest.mark.postgresql
async def test_two_operators_issuing_at_once_yield_one_current_card(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    from salud.errors import Conflict

    doc = await registered(client)
    # Completions issuing the first card at the same moment (the API refuses a first card
    # apart from an enrollment): one card is current, the others are told so.
    answers = await asyncio.gather(
        *(issued(client, doc["curp"]) for _ in range(4)), return_exceptions=True
    )
    assert sum(isinstance(a, dict) for a in answers) == 1, answers
    assert sum(isinstance(a, Conflict) for a in answers) == 3, answers
    listed = (await client.get(f"/api/v1/persons/{doc['curp']}/credentials")).json()
    assert [c["status"] for c in listed] == ["issued"]


async def test_the_validation_answer_matches_its_documented_model_and_refuses_bad_bodies(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    from salud.credentials.schemas import ValidationRead

    verifier = token_for(Role.VERIFIER)
    answer = await client.post("/api/v1/credentials/validate", json={"qr": "X"}, headers=verifier)
    assert ValidationRead.model_validate(answer.json()).reason == "not_base45"
    for body in ({}, {"qr": ""}, {"qr": "A", "extra": 1}):
        bad = await client.post("/api/v1/credentials/validate", json=body, headers=verifier)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.headers["content-type"] == "application/problem+json"
    broken = await client.post(
        "/api/v1/credentials/validate", content=b"{not json", headers=verifier
    )
    assert broken.status_code == 422
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/credentials/validate" in spec["paths"]


async def _card_with_face(
    settings: Settings, token_for: TokenFor
) -> tuple[dict[str, Any], str, KeySet]:
    """A person's first card issued by an app that puts the face in the QR: (the person, the
    signed QR text read from the rendered back, the published keys)."""
    app = create_app(settings.model_copy(update={"credential_qr_face": True}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            c.headers.update(token_for(Role.SUPERVISOR))
            doc = await registered(c)
            card = await issued(c, doc["curp"])
            qr = signed_qr_of(await back_of(c, card["credential_id"]))
            keys = await published(c)
    return doc, qr, keys


async def test_with_the_face_configured_the_bigger_qr_still_scans_and_carries_the_face(
    settings: Settings, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, qr, keys = await _card_with_face(settings, token_for)
    verified = verify(qr, keys)
    assert verified.claims.face is not None
    assert verified.claims.face_format == "webp"
    assert Image.open(io.BytesIO(verified.claims.face)).size == (48, 60)
    public = next(iter(keys.keys.values())).public
    decoded = claim169.decode_with_ed25519(qr, public)
    assert decoded.claim169.face


async def test_a_first_card_comes_only_from_an_enrollment(client: httpx.AsyncClient) -> None:
    """An operator or supervisor asking the API for a first card for someone never enrolled
    is refused (409 naming `reason`): it would skip the documents, the photo, the
    fingerprints and the duplicate review. A reissue needs a card to replace."""
    doc = await registered(client)
    url = f"/api/v1/persons/{doc['curp']}/credentials"
    first = await client.post(url, json={"reason": "first"})
    assert first.status_code == 409, first.text
    assert [e["field"] for e in first.json()["errors"]] == ["reason"]
    assert "registro en un módulo" in first.json()["detail"]
    lost = await client.post(url, json={"reason": "lost"})
    assert lost.status_code == 409
    assert (await client.get(url)).json() == []


async def test_the_status_route_cannot_move_the_plastic_toward_delivery(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Printed, ready for pickup and delivered are the print batches' and the module's
    delivery's (batch, module, identity and guardian checks): the status route takes only a
    supervisor's suspended, active and revoked, whoever asks."""
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    url = f"/api/v1/credentials/{card['credential_id']}/status"
    operator = token_for(Role.REGISTRATION_OPERATOR, module="MR-13-0001")
    for headers in ({}, operator):
        for step in ("printed", "ready_for_pickup", "delivered"):
            refused = await client.post(url, json={"status": step}, headers=headers)
            assert refused.status_code == 422, (step, refused.text)
            assert [e["field"] for e in refused.json()["errors"]] == ["status"]
    assert (
        await client.post(url, json={"status": "suspended"}, headers=operator)
    ).status_code == 403
    listed = (await client.get(f"/api/v1/persons/{doc['curp']}/credentials")).json()
    assert [c["status"] for c in listed] == ["issued"]
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert spec["components"]["schemas"]["StatusChange"]["properties"]["status"]["enum"] == [
        "suspended", "active", "revoked"
    ]  # fmt: skip
    route = spec["paths"]["/api/v1/credentials/{credential_id}/status"]["post"]
    assert route["x-permission"] == "credential:revoke"


async def test_print_files_come_only_from_print_batches(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """No route prints arbitrary cards: a print file is a module's batch
    (/api/v1/enrollment/print-batches/{code}/print-file), which checks the module and
    keeps the cards in the batch that is shipped, received and delivered."""
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    body = {"credential_ids": [card["credential_id"]]}
    for headers in ({}, token_for(Role.REGISTRATION_OPERATOR, module="MR-13-0001")):
        gone = await client.post("/api/v1/credentials/print-file", json=body, headers=headers)
        assert gone.status_code in (404, 405), gone.text
    listed = (await client.get(f"/api/v1/persons/{doc['curp']}/credentials")).json()
    assert [c["status"] for c in listed] == ["issued"]
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/credentials/print-file" not in spec["paths"]


async def test_a_suspended_card_cannot_be_lifted_by_a_reissue(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A reissue voids the current card and hands over an active one: while the card is
    suspended it is refused (409 naming the card), to the holder, an operator and a
    supervisor alike; a supervisor reactivates it first."""
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    status = f"/api/v1/credentials/{card['credential_id']}/status"
    assert (await client.post(status, json={"status": "suspended"})).status_code == 200
    url = f"/api/v1/persons/{doc['curp']}/credentials"
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    operator = token_for(Role.REGISTRATION_OPERATOR)
    supervisor = token_for(Role.SUPERVISOR)
    for headers, reason in ((me, "lost"), (operator, "damaged"), (supervisor, "lost")):
        refused = await anonymous.post(url, json={"reason": reason}, headers=headers)
        assert refused.status_code == 409, (reason, refused.text)
        assert card["credential_id"] in refused.json()["detail"]
        assert "suspendida" in refused.json()["detail"]
    listed = (await client.get(url)).json()
    assert [(c["credential_id"], c["status"]) for c in listed] == [
        (card["credential_id"], "suspended")
    ]
    assert (await anonymous.get("/api/v1/me/digital-card", headers=me)).status_code == 404
    assert (await client.post(status, json={"status": "active"})).status_code == 200
    again = await anonymous.post(url, json={"reason": "lost"}, headers=me)
    assert again.status_code == 201, again.text


async def test_a_card_signed_with_a_key_rotated_by_another_process_validates_at_once(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    token_for: TokenFor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another server process rotates the key and issues a card with the new one: this
    process, whose key set is cached, reloads it for the unknown kid instead of answering
    unknown_key until its cache expires."""
    monkeypatch.setattr(signing, "RELOAD_SECONDS", 0.0)  # the once-a-second bound: elsewhere
    doc, other = await registered(client), await registered(client)
    old = signed_qr_of(await back_of(client, (await issued(client, doc["curp"]))["credential_id"]))
    assert (await validate(client, token_for, old))["verdict"] == "valid"  # the set is cached
    app = client._transport.app  # type: ignore[attr-defined]
    elsewhere = signing.Signer(app.state.sessions, app.state.keyring)
    async with app.state.sessions() as session, session.begin():
        kid = await signing.rotate(session, app.state.keyring, "otro.proceso")
    await issued(client, other["curp"])
    caller = Caller(Principal("account:m", "operador.otro", Role.SUPERVISOR, 10), app.state.audit)
    async with app.state.sessions() as session, session.begin():
        card = await credentials_service.issue(
            session, elsewhere, app.state.keyring, app.state.credential_config, other["curp"],
            IssueReason.LOST, caller,
        )  # fmt: skip
    new = signed_qr_of(await back_of(client, card.credential_id))
    assert verify(new, await elsewhere.keys()).key.kid.hex() == kid
    answer = await validate(client, token_for, new)
    assert (answer["verdict"], answer["card"]) == ("valid", "current"), answer
    public = await anonymous.post("/api/v1/public/credentials/validate", json={"qr": new})
    assert public.json()["verdict"] == "valid", public.text


async def test_public_validation_tells_no_one_why_a_card_is_not_current(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Issue 4: the public answer is valid or not and current or not. A suspended, revoked or
    superseded card answers alike (one reason, one message); the state itself is for the
    staff's validation."""
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    qr = signed_qr_of(await back_of(client, card["credential_id"]))
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    digital = (await anonymous.get("/api/v1/me/digital-card", headers=me)).json()["qr"]

    async def public(text: str) -> dict[str, Any]:
        answer = await anonymous.post("/api/v1/public/credentials/validate", json={"qr": text})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    status = f"/api/v1/credentials/{card['credential_id']}/status"
    assert (await client.post(status, json={"status": "suspended"})).status_code == 200
    answers = [await public(qr), await public(digital)]
    assert (await validate(client, token_for, qr))["card"] == "suspended"
    assert (await client.post(status, json={"status": "active"})).status_code == 200
    second = await issued(client, doc["curp"], "lost")
    answers += [await public(qr), await public(digital)]
    assert (await validate(client, token_for, qr))["card"] == "superseded"
    second_qr = signed_qr_of(await back_of(client, second["credential_id"]))
    assert (await public(second_qr))["card"] == "current"
    revoke = f"/api/v1/credentials/{second['credential_id']}/status"
    assert (await client.post(revoke, json={"status": "revoked"})).status_code == 200
    answers.append(await public(second_qr))
    assert (await validate(client, token_for, second_qr))["card"] == "revoked"
    assert answers == [answers[0]] * 5
    assert answers[0]["verdict"] == "invalid"
    assert (answers[0]["reason"], answers[0]["card"]) == ("not_current", "not_current")
    for word in ("suspend", "revoc", "reemplaz", "reposici"):
        assert word not in str(answers).lower()


async def test_no_digital_card_is_signed_for_an_expired_card(
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A plastic card past its end has no digital card: a statement would end with the card,
    already expired when shown. 404 as for a suspended card (the phone drops its copy), and
    the reason says to renew it; a minor's card through the parent alike."""
    parent = await registered(client, birth_date="1988-05-06")
    child = await registered(client, birth_date="2019-02-03")
    for person in (parent, child):
        await issued(client, person["curp"])
    linked = await client.post(
        f"/api/v1/persons/{child['curp']}/guardians",
        json={"guardian_curp": parent["curp"], "relationship": "mother",
              "reason": "acta de nacimiento"},
    )  # fmt: skip
    assert linked.status_code == 201, linked.text
    me = token_for(Role.CITIZEN, curp=parent["curp"])
    urls = ("/api/v1/me/digital-card", f"/api/v1/me/wards/{child['curp']}/digital-card")
    for url in urls:
        assert (await anonymous.get(url, headers=me)).status_code == 200
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE credentials SET expires_at = :at"),
            {"at": datetime(2026, 1, 2, 3, 4, tzinfo=UTC)},
        )
    for url in urls:
        refused = await anonymous.get(url, headers=me)
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        detail = refused.json()["detail"]
        assert "venció el 02/01/2026" in detail
        assert "renov" in detail


async def test_published_keys_are_cached_less_than_a_rotation_overlaps(
    anonymous: httpx.AsyncClient,
) -> None:
    """A key put in service signs at once, and the retired one covers cards for
    RETIRE_GRACE: a verifier's copy of the key set (HTTP cache on top of the server's own
    CACHE_SECONDS) must be fresh within that."""
    limit = signing.RETIRE_GRACE.total_seconds() - signing.CACHE_SECONDS
    for url in ("/.well-known/jwks.json", "/.well-known/cose-keys"):
        answer = await anonymous.get(url)
        assert answer.status_code == 200
        directives = dict(
            d.strip().partition("=")[::2] for d in answer.headers["cache-control"].split(",")
        )
        assert 0 < int(directives["max-age"]) <= limit, answer.headers["cache-control"]


async def test_the_public_validations_429_says_when_to_retry(anonymous: httpx.AsyncClient) -> None:
    for _ in range(70):
        answer = await anonymous.post("/api/v1/public/credentials/validate", json={"qr": "X"})
        if answer.status_code == 429:
            break
    assert answer.status_code == 429
    assert answer.headers["content-type"] == "application/problem+json"
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert f"espere {answer.headers['retry-after']} s" in answer.json()["detail"]


async def test_a_face_too_big_for_the_cards_back_is_left_out_of_the_qr(
    settings: Settings,
    token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The face in the QR is optional: when it would make the signed QR too big for the back
    even at 4 px modules, the card is issued without it, not left unprintable."""
    import random

    big = random.Random(3).randbytes(1500)  # incompressible: a 2,000-character QR text
    monkeypatch.setattr(credentials_service, "_face_thumbnail", lambda data: big)
    doc, qr, keys = await _card_with_face(settings, token_for)
    verified = verify(qr, keys)
    assert verified.claims.holder.curp == doc["curp"]
    assert verified.claims.face is None


async def test_a_replaced_photo_is_kept_and_its_reads_recorded(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Every change of the registry is versioned, the photo included: the replaced one stays
    (sealed as it was), with who took it and who replaced it; reading one is audited."""
    doc = await registered(client)
    url = f"/api/v1/persons/{doc['curp']}/photo"
    first = await client.get(f"{url}/versions/1")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["cache-control"] == "no-store"
    replaced = await client.put(
        url, content=synthetic_face(8), headers={"Content-Type": "image/jpeg"}
    )
    assert replaced.status_code == 204, replaced.text
    history = await client.get(f"{url}/history")
    assert history.status_code == 200, history.text
    old, new = history.json()
    assert (old["version"], new["version"]) == (1, 2)
    assert old["replaced_at"] is not None
    assert old["replaced_by"] == old["taken_by"] == new["taken_by"]
    assert new["replaced_at"] is None
    assert (await client.get(f"{url}/versions/1")).content == first.content
    second = (await client.get(f"{url}/versions/2")).content
    assert second != first.content
    assert Image.open(io.BytesIO(second)).size == (new["width"], new["height"])
    missing = await client.get(f"{url}/versions/3")
    assert missing.status_code == 404
    auditor = token_for(Role.AUDITOR)  # the history's who and when, not the faces
    assert (await anonymous.get(f"{url}/history", headers=auditor)).status_code == 200
    assert (await anonymous.get(f"{url}/versions/1", headers=auditor)).status_code == 403
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    log = (await anonymous.get(f"/api/v1/persons/{doc['curp']}/accesses", headers=me)).json()
    actions = [e["action"] for e in log["items"]]
    assert (
        actions.count("identity:photo:read") == 4
    )  # three shown, one refused  # a version that is not there showed nothing
    assert "identity:photo:history" in actions
