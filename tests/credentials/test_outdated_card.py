"""A card states what it signed at issuance: its front and its QR never disagree, reception
is told when the registry has changed since (`outdated`), the digital card shows the
registry's data and says the plastic is outdated, and a reissue with reason `update` mends
it."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from salud.access.permissions import Role
from salud.credentials import service
from salud.credentials.models import Credential
from salud.credentials.verify import verify
from tests.conftest import TokenFor
from tests.credentials.test_credentials_api import (
    back_of,
    issued,
    published,
    registered,
    signed_qr_of,
    validate,
)

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key")]


async def test_a_changed_blood_type_never_makes_one_card_state_two_things(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = await registered(client)
    card = await issued(client, doc["curp"])
    changed = await client.patch(
        f"/api/v1/persons/{doc['curp']}",
        json={"blood_type": "AB-", "organ_donor": "yes", "organ_donor_date": "2025-01-01",
              "reason": "corrección del grupo sanguíneo"},
        headers={"If-Match": 'W/"1"'},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    qr = signed_qr_of(await back_of(client, card["credential_id"]))
    signed = verify(qr, await published(client)).claims.holder
    assert (signed.blood_type, signed.organ_donor) == ("O+", "not_stated")

    # The front printed (or rendered) now says what the QR on its back says.
    app = client._transport.app  # type: ignore[attr-defined]
    async with app.state.sessions() as session:
        row = (
            await session.execute(
                select(Credential).where(Credential.credential_id == card["credential_id"])
            )
        ).scalar_one()
        view = await service.card_view(session, app.state.keyring, app.state.credential_config, row)
    printed = (view.given_names, view.surnames, view.birth_date, view.sex, view.nationality,
               view.blood_type, view.organ_donor)  # fmt: skip
    assert printed == (signed.given_names, signed.surnames, signed.birth_date, signed.sex,
                       signed.nationality, signed.blood_type, signed.organ_donor)  # fmt: skip

    # Reception: still the holder's valid card, but outdated, and told what to do.
    answer = await validate(client, token_for, qr)
    assert answer["verdict"] == "valid"
    assert answer["outdated"] == ["blood_type", "organ_donor"]
    assert "grupo sanguíneo, donación de órganos" in answer["message"]
    assert "actualización (update)" in answer["message"]

    # The phone: the digital card is signed anew with the registry's data, and says the
    # plastic is behind.
    me = token_for(Role.CITIZEN, curp=doc["curp"])
    digital = (await anonymous.get("/api/v1/me/digital-card", headers=me)).json()
    assert digital["holder"]["blood_type"] == "AB-"
    assert digital["plastic_outdated"] == ["blood_type", "organ_donor"]
    assert verify(digital["qr"], await published(client)).claims.holder.blood_type == "AB-"
    assert (await validate(client, token_for, digital["qr"]))["outdated"] == []

    # A reissue with reason update mends it: the new card states the registry's data.
    again = await client.post(
        f"/api/v1/persons/{doc['curp']}/credentials", json={"reason": "update"}
    )
    assert again.status_code == 201, again.text
    assert again.json()["reason"] == "update"
    new_qr = signed_qr_of(await back_of(client, again.json()["credential_id"]))
    fresh = await validate(client, token_for, new_qr)
    assert (fresh["verdict"], fresh["outdated"]) == ("valid", [])
    assert fresh["holder"]["blood_type"] == "AB-"
    assert fresh["message"] == "Credencial válida: coteje la fotografía con la persona."
    old = await validate(client, token_for, qr)
    assert (old["card"], old["outdated"]) == ("superseded", [])
    digital = (await anonymous.get("/api/v1/me/digital-card", headers=me)).json()
    assert digital["plastic_outdated"] == []
