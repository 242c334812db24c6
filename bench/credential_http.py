"""The reception desk's validation API over HTTP against a hello-world endpoint, in one run.

    .venv/bin/python -m bench.credential_http --persons 20000 --cards 500 --seconds 10 --rounds 3

PostgreSQL with synthetic persons, each card issued with a photo (sealed at rest). One uvicorn
worker; wrk (1 thread, 32 connections) posts the scanned text of random cards to
POST /api/v1/credentials/validate with a verifier's token: the offline verification, the
card's state, the holder's live entitlement and photo (opened from its AES-GCM envelope), and
the audit entry. Alternating with GET /api/v1/health/live; medians.
Target (issue 4): at least 40 % of hello-world's requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import orjson
from sqlalchemy import select

from bench.common import OUT, fresh_postgresql, machine, server, wrk
from bench.http_read import _load, _token
from salud.access.audit import AuditLog
from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.cli.credentials import config_of
from salud.config import get_settings
from salud.credentials import service, signing
from salud.credentials.models import Credential
from salud.credentials.schemas import IssueReason
from salud.identity import photos
from salud.identity.models import Person
from salud.identity.synth import synthetic_face
from salud.kit.sealing import Keyring
from salud.storage.engine import create_engine, session_factory


async def _issue(url: str, cards: int) -> list[str]:
    settings = get_settings()
    ring = Keyring.from_config(settings.kek_id, settings.kek.get_secret_value())
    engine = create_engine(url)
    sessions = session_factory(engine)
    audit = AuditLog(sessions, settings.audit_key.get_secret_value().encode())
    await audit.start()
    caller = Caller(Principal("bench", "supervisor.bench", Role.SUPERVISOR, 10), audit)
    try:
        async with sessions() as session, session.begin():
            await signing.rotate(session, ring, "bench")
        signer = signing.Signer(sessions, ring)
        async with sessions() as session:
            curps = list(await session.scalars(select(Person.curp).limit(cards)))
        for i, curp in enumerate(curps):
            async with sessions() as session, session.begin():
                await photos.put_photo(session, ring, curp, synthetic_face(i % 20), caller)
                await service.issue(  # as a completed enrollment issues the first card
                    session, signer, ring, config_of(settings), curp, IssueReason.FIRST, caller,
                    enrolled=True,
                )  # fmt: skip
        async with sessions() as session:
            return list(await session.scalars(select(Credential.qr_text)))
    finally:
        await audit.close()
        await engine.dispose()


def _script(texts: list[str]) -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "validate.lua"
    bodies = ",\n".join(orjson.dumps(orjson.dumps({"qr": t}).decode()).decode() for t in texts)
    path.write_text(
        f"local bodies = {{\n{bodies}\n}}\n"
        "local n = #bodies\nmath.randomseed(11)\n"
        f"local auth = 'Bearer {_token()}'\n"
        "request = function()\n"
        "  return wrk.format('POST', '/api/v1/credentials/validate',\n"
        "    {['Authorization'] = auth, ['Content-Type'] = 'application/json'},\n"
        "    bodies[math.random(n)])\n"
        "end\n"
    )
    return str(path)


def run(persons: int, cards: int, seconds: int, rounds: int) -> dict[str, object]:
    with fresh_postgresql() as url:
        asyncio.run(_load(url, persons))
        texts = asyncio.run(_issue(url, cards))
        script = _script(texts)
        hello, validate = [], []
        with server(url) as base:
            wrk(f"{base}/api/v1/health/live", seconds=2)
            wrk(base, seconds=2, script=script)  # type: ignore[arg-type]
            for i in range(rounds):
                h = wrk(f"{base}/api/v1/health/live", seconds=seconds)
                v = wrk(base, seconds=seconds, script=script)  # type: ignore[arg-type]
                if h.errors or v.errors:
                    raise SystemExit(f"errors under load: {h} {v}")
                hello.append(h)
                validate.append(v)
                print(f"round {i + 1}: hello {h.requests_per_s:,.0f}/s p99 {h.p99_ms:.1f} ms | "
                      f"validate {v.requests_per_s:,.0f}/s p99 {v.p99_ms:.1f} ms")  # fmt: skip
    result: dict[str, object] = {
        "machine": machine(),
        "hello_rps": statistics.median(h.requests_per_s for h in hello),
        "hello_p99_ms": statistics.median(h.p99_ms for h in hello),
        "validate_rps": statistics.median(v.requests_per_s for v in validate),
        "validate_p99_ms": statistics.median(v.p99_ms for v in validate),
    }
    result["ratio"] = result["validate_rps"] / result["hello_rps"]  # type: ignore[operator]
    print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--cards", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.persons, args.cards, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
