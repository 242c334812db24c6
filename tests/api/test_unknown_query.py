"""A query parameter the REST API does not know is refused by name, never ignored: an
auditor's `?person_curp=` on the whole log used to answer every entry, unfiltered."""

from __future__ import annotations

import httpx
import pytest

from salud.access.permissions import Role
from tests.conftest import TokenFor

pytestmark = pytest.mark.db


async def test_unknown_query_parameters_are_refused_by_name(
    anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    auditor = token_for(Role.AUDITOR)
    known = await anonymous.get("/api/v1/audit/events", params={"action": "x:y:z"},
                                headers=auditor)  # fmt: skip
    assert known.status_code == 200, known.text
    refused = await anonymous.get(
        "/api/v1/audit/events", params={"person_curp": "GOMC850312HDFNRR09", "limit": 5},
        headers=auditor,
    )  # fmt: skip
    assert refused.status_code == 422
    problem = refused.json()
    assert [e["field"] for e in problem["errors"]] == ["person_curp"]
    assert "action" in problem["detail"]  # it says which ones it takes
    # Also where the parameters come through a dependency, and with none declared at all.
    supervisor = token_for(Role.SUPERVISOR)
    search = await anonymous.get("/api/v1/persons", params={"curp_like": "GOM"},
                                 headers=supervisor)  # fmt: skip
    assert search.status_code == 422
    assert [e["field"] for e in search.json()["errors"]] == ["curp_like"]
    citizen = token_for(Role.CITIZEN, curp="GOMC850312HDFNRR09")
    wards = await anonymous.get("/api/v1/me/wards", params={"todos": "1"}, headers=citizen)
    assert wards.status_code == 422
