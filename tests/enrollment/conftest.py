"""A registration drive ready for tests: one open module in Hidalgo (13), a phase that opens
the state, and an active calendar that admits everyone for the next months."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import httpx
import pytest

from salud.access.permissions import Role
from salud.kit.clock import today_mx
from tests.conftest import TokenFor

MODULE = "MR-13-0001"
E = "/api/v1/enrollment"


@dataclass(frozen=True)
class Drive:
    module: str
    supervisor: dict[str, str]
    operator: dict[str, str]

    def next_open_day(self, after: date | None = None) -> date:
        day = (after or today_mx()) + timedelta(days=1)
        while day.isoweekday() == 7:  # the module works Monday to Saturday
            day += timedelta(days=1)
        return day


async def open_module(
    client: httpx.AsyncClient,
    token_for: TokenFor,
    code: str = MODULE,
    capacity: int = 120,
    state: str = "13",
) -> Drive:
    supervisor = token_for(Role.SUPERVISOR, username="supervisor.prueba", module=code)
    operator = token_for(Role.REGISTRATION_OPERATOR, username="operador.prueba", module=code)
    made = await client.post(
        f"{E}/modules",
        headers=supervisor,
        json={
            "code": code,
            "name": "Módulo Centro de Salud Pachuca",
            "state": state,
            "municipality": "048",
            "address": "Av. Juárez 100, Centro, Pachuca",
            "latitude": 20.12,
            "longitude": -98.73,
            "weekdays": "123456",
            "daily_capacity": capacity,
        },
    )
    assert made.status_code == 201, made.text
    opened = await client.post(
        f"{E}/modules/{code}/status", headers=supervisor, json={"status": "open"}
    )
    assert opened.status_code == 200, opened.text
    return Drive(code, supervisor, operator)


async def make_drive(anonymous: httpx.AsyncClient, token_for: TokenFor) -> Drive:
    admin = token_for(Role.INSTITUTION_ADMIN)  # the phases and calendar are the ministry's
    today = today_mx()
    phase = await anonymous.post(
        f"{E}/phases",
        headers=admin,
        json={"name": "Fase 1", "starts_on": today.isoformat(), "states": ["13", "09"]},
    )
    assert phase.status_code == 201, phase.text
    calendar = await anonymous.post(
        f"{E}/calendars",
        headers=admin,
        json={
            "name": "todos",
            "active": True,
            "rules": [
                {
                    "starts_on": today.isoformat(),
                    "ends_on": (today + timedelta(days=120)).isoformat(),
                }
            ],
        },
    )
    assert calendar.status_code == 201, calendar.text
    return await open_module(anonymous, token_for)


@pytest.fixture
async def drive(anonymous: httpx.AsyncClient, token_for: TokenFor) -> Drive:
    return await make_drive(anonymous, token_for)
