"""A person registered at the module may name their assigned unit: it must be a current unit
of the catalog, as at the registry's own routes (it goes into the signed card)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TokenFor
from tests.enrollment.conftest import E, make_drive
from tests.factories.persons import person_doc
from tests.identity.test_person_nearest_units import hidalgo_units  # noqa: F401 - fixture

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("signing_key", "hidalgo_units")]


async def test_the_assigned_unit_is_checked_when_the_module_registers_the_person(
    anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    drive = await make_drive(anonymous, token_for)
    for clues, status in (("HGIMB000011", 201), ("HGIMB999999", 422)):
        visitor = person_doc(assigned_clues=clues)
        body = {"curp": visitor["curp"], "person": visitor}
        started = await anonymous.post(f"{E}/enrollments", headers=drive.operator, json=body)
        assert started.status_code == status, (clues, started.text)
        if status == 422:
            assert "assigned_clues" in started.json()["errors"][0]["field"]
