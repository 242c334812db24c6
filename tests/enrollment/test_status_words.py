"""The desk speaks Spanish: every stored state has its words, and the reasons a step is
refused say them, never the English code ("ya está completed")."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum

import httpx
import pytest
from sqlalchemy import CheckConstraint, Table

from salud.enrollment.models import (
    Appointment,
    DuplicateReview,
    Enrollment,
    PrintBatch,
    RegistrationModule,
)
from salud.enrollment.schemas import (
    APPOINTMENT_STATUS_WORDS,
    BATCH_STATUS_WORDS,
    ENROLLMENT_STATUS_WORDS,
    MODULE_STATUS_WORDS,
    REVIEW_STATUS_WORDS,
    AppointmentStatus,
    BatchStatus,
    EnrollmentStatus,
    ModuleStatus,
    ReviewStatus,
)
from salud.kit.clock import today_mx
from tests.enrollment.conftest import MODULE, Drive, E
from tests.enrollment.test_enrollment import enroll_adult, start
from tests.enrollment.test_review_rules import twins
from tests.factories.persons import person_doc

KINDS: list[tuple[type[object], type[StrEnum], dict[str, str]]] = [
    (Enrollment, EnrollmentStatus, ENROLLMENT_STATUS_WORDS),
    (RegistrationModule, ModuleStatus, MODULE_STATUS_WORDS),
    (Appointment, AppointmentStatus, APPOINTMENT_STATUS_WORDS),
    (DuplicateReview, ReviewStatus, REVIEW_STATUS_WORDS),
    (PrintBatch, BatchStatus, BATCH_STATUS_WORDS),
]


def _stored(model: type[object]) -> set[str]:
    """The states the table's CHECK constraint allows."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    [check] = [c for c in table.constraints
               if isinstance(c, CheckConstraint) and "status IN" in str(c.sqltext)]  # fmt: skip
    return set(re.findall(r"'([a-z_]+)'", str(check.sqltext)))


@pytest.mark.parametrize(
    ("model", "enum", "words"), KINDS, ids=lambda k: getattr(k, "__name__", "")
)
def test_every_state_has_spanish_words(
    model: type[object], enum: type[StrEnum], words: dict[str, str]
) -> None:
    """A state added to a table or an enum without its words fails here, before a reason
    shows it in English."""
    states = _stored(model)
    assert states == {s.value for s in enum}
    for state in states:
        said = words[state]
        assert said
        assert said != state
        assert not re.search(r"[a-z]+_[a-z]+", said), said  # no code
        english = {"open", "review", "completed", "cancelled", "planned", "closed", "booked",
                   "kept", "pending", "distinct", "duplicate", "created", "printed",
                   "shipped", "received"}  # fmt: skip
        assert not set(said.split()) & english, said


@pytest.mark.db
async def test_the_reasons_say_the_states_in_spanish(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str
) -> None:
    def spanish(answer: httpx.Response, word: str, code: str) -> None:
        assert answer.status_code == 409, answer.text
        detail = answer.json()["detail"]
        assert word in detail, detail
        assert f" {code}" not in detail, detail
        assert f"({code}" not in detail, detail

    done = await enroll_adult(anonymous, drive, 61)
    folio = done["folio"]
    docs = await anonymous.put(f"{E}/enrollments/{folio}/documents", headers=drive.operator,
                               json={"documents": []})  # fmt: skip
    spanish(docs, "ya está concluido", "completed")
    cancel = await anonymous.post(f"{E}/enrollments/{folio}/cancel", headers=drive.operator,
                                  json={"reason": "CURP capturada por error"})  # fmt: skip
    spanish(cancel, "está concluido", "completed")
    left = (await start(anonymous, drive, person_doc())).json()["folio"]
    body = {"reason": "la persona se retiró del módulo"}
    await anonymous.post(f"{E}/enrollments/{left}/cancel", headers=drive.operator, json=body)
    again = await anonymous.post(f"{E}/enrollments/{left}/cancel", headers=drive.operator,
                                 json=body)  # fmt: skip
    spanish(again, "está cancelado", "cancelled")
    _, twin = await twins(anonymous, drive)
    await start(anonymous, drive, twin)
    [review] = (await anonymous.get(f"{E}/reviews", headers=drive.supervisor)).json()
    url = f"{E}/reviews/{review['id']}"
    assert (await anonymous.post(url, json={"decision": "distinct"},
                                 headers=drive.supervisor)).status_code == 200  # fmt: skip
    twice = await anonymous.post(url, json={"decision": "distinct"}, headers=drive.supervisor)
    spanish(twice, "personas distintas", "distinct")
    opened = await anonymous.post(f"{E}/modules/{MODULE}/status", headers=drive.supervisor,
                                  json={"status": "open"})  # fmt: skip
    spanish(opened, "ya está abierto", "open")
    day = drive.next_open_day(today_mx() + timedelta(days=1))
    curp = person_doc()["curp"]
    wanted = {"curp": curp, "module_code": MODULE, "day": day.isoformat()}
    booked = await anonymous.post(f"{E}/appointments", json=wanted)
    proof = {"curp": curp}
    await anonymous.post(f"{E}/appointments/{booked.json()['folio']}/cancel", json=proof)
    late = await anonymous.post(f"{E}/appointments/{booked.json()['folio']}/cancel", json=proof)
    spanish(late, "(cancelada)", "cancelled")


@pytest.mark.db
async def test_a_batch_refused_a_step_says_its_state_in_spanish(
    anonymous: httpx.AsyncClient, drive: Drive, signing_key: str
) -> None:
    """It said "el lote … ya se imprimió (printed)" and "un lote en estado created no pasa a
    received"."""

    def spanish(answer: httpx.Response, words: str) -> None:
        assert answer.status_code == 409, answer.text
        detail = answer.json()["detail"]
        assert words in detail, detail
        assert not set(re.findall(r"[a-z]+", detail)) & {s.value for s in BatchStatus}, detail

    await enroll_adult(anonymous, drive, 62)
    op = drive.operator
    code = (await anonymous.post(f"{E}/print-batches", json={"module_code": MODULE},
                                 headers=op)).json()["code"]  # fmt: skip
    step = f"{E}/print-batches/{code}/status"
    early = await anonymous.post(step, json={"status": "shipped"}, headers=op)
    spanish(early, "está por imprimir: no puede pasar a enviado")
    printed = await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)
    assert printed.status_code == 200, printed.text
    again = await anonymous.post(f"{E}/print-batches/{code}/print-file", headers=op)
    spanish(again, "ya se imprimió (está impreso)")
    skipped = await anonymous.post(step, json={"status": "received"}, headers=op)
    spanish(skipped, "está impreso: no puede pasar a recibido")
    for s in ("shipped", "received"):
        assert (await anonymous.post(step, json={"status": s}, headers=op)).status_code == 200
    spanish(await anonymous.post(step, json={"status": "received"}, headers=op),
            "está recibido: no puede pasar a recibido")  # fmt: skip
