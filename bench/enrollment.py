"""Enrollments per second: the whole visit at the module, on PostgreSQL, in one run.

    .venv/bin/python -m bench.enrollment --seconds 20 --concurrency 16

One enrollment is what the operator's desk does for a person not yet in the registry: start
(register the person, CURP checked against the name, probable-duplicate lookup), the
documents, the photo (checked, sealed with AES-GCM), two fingerprints (decoded, quality
scored, sealed), and completion (checklist, credential signed with Ed25519, digital card on,
receipt) — six transactions, each audited in its transaction.

Two ways, alternating, medians of the rounds:
- *service*: the same service calls the HTTP routes make, from `--concurrency` asyncio tasks in
  this process (no HTTP), each step its own session and transaction;
- *http*: the real app under uvicorn (`--workers`, default one; uvloop) and `--concurrency`
  clients in a separate process (httpx), six requests per enrollment.
Target (issue 6): 120 enrollments/s (2,900 modules x one per 4 minutes x 10).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from datetime import timedelta
from typing import Any

import httpx
import orjson

from bench.common import SHARED, fresh_postgresql, machine, server
from salud.access.audit import AuditLog
from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.cli.credentials import config_of
from salud.config import get_settings
from salud.credentials import signing
from salud.enrollment import booking, service
from salud.enrollment.biometrics import NoMatcher
from salud.enrollment.calendar import Rule
from salud.enrollment.documents import Document, DocumentKind
from salud.enrollment.schemas import (
    CalendarCreate,
    DocumentsIn,
    EnrollmentStart,
    ModuleCreate,
    ModuleStatus,
    PhaseCreate,
)
from salud.identity import synth
from salud.identity.schemas import PersonCreate
from salud.kit.clock import today_mx
from salud.kit.sealing import Keyring
from salud.storage.engine import create_engine, session_factory

MODULE = "MR-13-0001"


def _people(count: int, seed: int) -> list[dict[str, Any]]:
    """Adults (a minor's visit needs a guardian: another path, not the common one)."""
    adult = today_mx().replace(year=today_mx().year - 19)
    found = synth.generate_persons(count * 2, seed, SHARED)
    return [p for p in found if p["birth_date"] < adult.isoformat()][:count]


def _documents() -> DocumentsIn:
    proof = today_mx() - timedelta(days=20)
    return DocumentsIn(documents=[
        Document(kind=DocumentKind.PHOTO_ID), Document(kind=DocumentKind.CURP),
        Document(kind=DocumentKind.ADDRESS_PROOF, issued_on=proof),
    ])  # fmt: skip


def _ring() -> Keyring:
    s = get_settings()
    return Keyring.from_config(s.kek_id, s.kek.get_secret_value())


async def _prepare(url: str) -> None:
    """A signing key, a phase, the calendar and one open module (capacity is not the point)."""
    settings = get_settings()
    engine = create_engine(url)
    sessions = session_factory(engine)
    audit = AuditLog(sessions, settings.audit_key.get_secret_value().encode())
    await audit.start()
    who = Principal("bench", "supervisor.bench", Role.SUPERVISOR, 10, module_code=MODULE)
    caller = Caller(who, audit, "registro")
    today = today_mx()
    try:
        async with sessions() as s, s.begin():
            await signing.rotate(s, _ring(), "bench")
            await booking.create_phase(
                s, PhaseCreate(name="F", starts_on=today, states=["13"]), caller
            )
            rule = Rule(starts_on=today, ends_on=today + timedelta(days=30))
            calendar = CalendarCreate(name="bench", active=True, rules=[rule])
            await booking.create_calendar(s, calendar, caller)
            module = ModuleCreate(code=MODULE, name="Bench", address="Centro 1", state="13",
                                  weekdays="1234567", daily_capacity=5000)  # fmt: skip
            await booking.create_module(s, module, caller)
            await booking.set_module_status(s, MODULE, ModuleStatus.OPEN, caller)
    finally:
        await audit.close()
        await engine.dispose()


# --- in process -----------------------------------------------------------------------------


async def _service_round(
    url: str, people: list[dict[str, Any]], seconds: float, tasks: int
) -> float:
    settings = get_settings()
    engine = create_engine(url, pool_size=tasks + 2)
    sessions = session_factory(engine)
    audit = AuditLog(sessions, settings.audit_key.get_secret_value().encode())
    await audit.start()
    ring = _ring()
    issuance = service.Issuance(signing.Signer(sessions, ring), ring, config_of(settings))
    who = Principal("bench", "operador.bench", Role.REGISTRATION_OPERATOR, 10, module_code=MODULE)
    caller = Caller(who, audit, "registro")
    face, prints = synth.synthetic_face(1), [synth.synthetic_fingerprint(f) for f in (2, 7)]
    docs, matcher = _documents(), NoMatcher()
    queue = iter(people)
    done = 0
    deadline = time.monotonic() + seconds

    async def one(doc: dict[str, Any]) -> None:
        async with sessions() as s, s.begin():
            data = EnrollmentStart(curp=doc["curp"], person=PersonCreate.model_validate(doc))
            folio = (await service.start(s, data, caller)).folio
        async with sessions() as s, s.begin():
            await service.set_documents(s, folio, docs, caller)
        async with sessions() as s, s.begin():
            await service.put_photo(s, ring, folio, face, caller)
        for finger, image in zip((2, 7), prints, strict=True):
            async with sessions() as s, s.begin():
                await service.put_fingerprint(s, ring, folio, finger, image, caller)
        async with sessions() as s, s.begin():
            await service.complete(s, issuance, matcher, folio, caller)

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            doc = next(queue, None)
            if doc is None:
                return
            await one(doc)
            done += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(tasks)))
    finally:
        await audit.close()
        await engine.dispose()
    return done / (time.monotonic() - started)


# --- over HTTP --------------------------------------------------------------------------------


def _http_client(base: str, token: str, people: list[dict[str, Any]], seconds: float,
                 tasks: int, out: Any) -> None:  # fmt: skip
    async def run() -> float:
        h = {"Authorization": f"Bearer {token}"}
        j = {**h, "content-type": "application/json"}
        face = synth.synthetic_face(1)
        prints = [synth.synthetic_fingerprint(f) for f in (2, 7)]
        docs = _documents().model_dump_json().encode()
        queue = iter(people)
        done = 0
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=tasks, max_keepalive_connections=tasks)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:

            async def one(doc: dict[str, Any]) -> None:
                body = orjson.dumps({"curp": doc["curp"], "person": doc})
                r = await c.post("/api/v1/enrollment/enrollments", content=body, headers=j)
                assert r.status_code == 201, r.text
                folio = r.json()["folio"]
                e = f"/api/v1/enrollment/enrollments/{folio}"
                for response in (
                    await c.put(f"{e}/documents", content=docs, headers=j),
                    await c.put(
                        f"{e}/photo", content=face, headers={**h, "content-type": "image/jpeg"}
                    ),
                    await c.put(f"{e}/fingerprints/2", content=prints[0], headers=h),
                    await c.put(f"{e}/fingerprints/7", content=prints[1], headers=h),
                    await c.post(f"{e}/complete", headers=h),
                ):
                    assert response.status_code == 200, response.text

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    doc = next(queue, None)
                    if doc is None:
                        return
                    await one(doc)
                    done += 1

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(tasks)))
            return done / (time.monotonic() - started)

    out.put(asyncio.run(run()))


def _operator_token() -> str:
    s = get_settings()
    tokens = TokenService(s.token_secret.get_secret_value(), 3600)
    who = Principal("account:bench", "operador.bench", Role.REGISTRATION_OPERATOR, 10,
                    module_code=MODULE)  # fmt: skip
    return tokens.issue(who)


def run(seconds: float, concurrency: int, rounds: int, workers: int = 1) -> dict[str, float]:
    per_round = int(seconds * 400) + 1000  # more people than any round can enroll
    people = _people(per_round * rounds * 2, 2026)
    chunks = iter([people[i : i + per_round] for i in range(0, len(people), per_round)])
    service_rates: list[float] = []
    http_rates: list[float] = []
    with fresh_postgresql() as url:
        asyncio.run(_prepare(url))
        with server(url, workers=workers) as base:
            token = _operator_token()
            for _ in range(rounds):
                service_rates.append(
                    asyncio.run(_service_round(url, next(chunks), seconds, concurrency))
                )
                out: multiprocessing.Queue[float] = multiprocessing.Queue()
                client = multiprocessing.Process(
                    target=_http_client,
                    args=(base, token, next(chunks), seconds, concurrency, out),
                )
                client.start()
                http_rates.append(out.get())
                client.join()
    result = {
        "service_per_s": statistics.median(service_rates),
        "http_per_s": statistics.median(http_rates),
    }
    print(f"machine: {machine()}")
    print(f"rounds: service {[round(r, 1) for r in service_rates]}, "
          f"http {[round(r, 1) for r in http_rates]}")  # fmt: skip
    print(f"enrollments/s (median): service {result['service_per_s']:.1f}, "
          f"http {result['http_per_s']:.1f}; target 120")  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    run(args.seconds, args.concurrency, args.rounds, args.workers)


if __name__ == "__main__":
    main()
