"""Cost of authorization + audit on a person read, against the same read without them.

    .venv/bin/python -m bench.auth_overhead --persons 100000 --reads 20000 --rounds 5

In process, on PostgreSQL, 32 concurrent readers through the same FastReader pool:
- bare: the CURP check, repository.read_by_curp and the JSON builder (service.read_json);
- guarded: service.get_json as the endpoint calls it: the bearer token verified into a
  Principal, Caller.allow (role and self checks), the same read, and the audit entry
  written (group commit) before the answer is returned.
Alternating rounds in one run; medians. Target (issue 3): under 25 % overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time

import orjson

from bench.common import fresh_postgresql, machine, synthetic_file
from salud.access.audit import AuditLog
from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.identity import bulk, repository, service
from salud.storage.engine import create_engine, session_factory
from salud.storage.fastread import FastReader

CONCURRENCY = 32


async def _run(url: str, persons: int, reads: int, rounds: int) -> dict[str, float]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    await bulk.import_file(
        sessions, synthetic_file(persons), actor="bench", audit_key=b"bench-audit-key", workers=2
    )
    with synthetic_file(persons).open("rb") as fh:
        curps = [orjson.loads(line)["curp"] for line in fh]
    sample = random.Random(5).choices(curps, k=reads)
    reader = FastReader(engine, pool_size=CONCURRENCY)
    await reader.start()
    audit = AuditLog(sessions, b"bench-audit-key")
    await audit.start()
    tokens = TokenService("bench-token-secret-0123456789abcdef", 3600)
    token = tokens.issue(Principal("account:1", "recepcion.bench", Role.VERIFIER, 3))

    async def bare(curp: str) -> None:
        found = await repository.read_by_curp(reader, service.check_curp(curp))
        assert found is not None
        service.read_json(*found)

    async def guarded(curp: str) -> None:
        caller = Caller(tokens.principal(token), audit, purpose="verificacion")
        await service.get_json(reader, curp, caller)

    async def timed(fn: object) -> float:
        queue = list(sample)

        async def worker() -> None:
            while queue:
                await fn(queue.pop())  # type: ignore[operator]

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return reads / (time.perf_counter() - start)

    gc.collect()
    gc.freeze()  # as the server does after start-up (app.py)
    await timed(bare)  # warm-up: prepared statements, caches
    await timed(guarded)
    bare_rates, guarded_rates = [], []
    for i in range(rounds):
        bare_rates.append(await timed(bare))
        guarded_rates.append(await timed(guarded))
        print(f"round {i + 1}: bare {bare_rates[-1]:,.0f}/s, guarded {guarded_rates[-1]:,.0f}/s")
    await audit.close()
    await reader.close()
    await engine.dispose()
    b, g = statistics.median(bare_rates), statistics.median(guarded_rates)
    result = {"bare_per_s": b, "guarded_per_s": g, "overhead": b / g - 1}
    print(result, machine())
    return result


def run(persons: int, reads: int, rounds: int) -> dict[str, float]:
    with fresh_postgresql() as url:
        return asyncio.run(_run(url, persons, reads, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run(args.persons, args.reads, args.rounds)


if __name__ == "__main__":
    main()
