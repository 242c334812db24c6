"""Person read by CURP over HTTP against a hello-world endpoint of the same server stack.

    .venv/bin/python -m bench.http_read --persons 100000 --seconds 10 --rounds 3

Both endpoints are served by the same process (FastAPI + uvicorn, 1 worker, PostgreSQL via
asyncpg) and loaded by wrk (1 thread, 32 connections) on the same 2-core machine, alternating
hello/read in each round; the figures are the medians over rounds.
Target (issue 2): the read reaches at least half the hello-world requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics

from bench.common import OUT, fresh_postgresql, machine, server, synthetic_file, wrk
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.config import get_settings
from salud.identity import bulk
from salud.storage.engine import create_engine, session_factory


async def _load(url: str, count: int) -> None:
    engine = create_engine(url)
    try:
        report = await bulk.import_file(
            session_factory(engine),
            synthetic_file(count),
            actor="bench",
            audit_key=get_settings().audit_key.get_secret_value().encode(),
        )
        assert report.inserted == count
    finally:
        await engine.dispose()


def _token() -> str:
    """A verifier's token, signed with the server's (development) secret."""
    settings = get_settings()
    tokens = TokenService(settings.token_secret.get_secret_value(), 24 * 3600)
    return tokens.issue(Principal("account:bench", "bench.recepcion", Role.VERIFIER))


def _lua_script(count: int, prefix: str = "/api/v1/persons/", sample: int = 5000) -> str:
    import orjson

    path = synthetic_file(count)
    curps: list[str] = []
    with path.open("rb") as fh:
        for line in fh:
            curps.append(orjson.loads(line)["curp"])
    chosen = random.Random(3).sample(curps, min(sample, len(curps)))
    script = OUT / f"read_{prefix.strip('/').replace('/', '_')}.lua"
    body = ",\n".join(f'"{c}"' for c in chosen)
    script.write_text(
        f"local curps = {{\n{body}\n}}\n"
        "local n = #curps\n"
        "math.randomseed(7)\n"
        f"local auth = 'Bearer {_token()}'\n"
        "request = function()\n"
        f"  return wrk.format('GET', '{prefix}' .. curps[math.random(n)],\n"
        "                    {['Authorization'] = auth})\n"
        "end\n"
    )
    return str(script)


def run(persons: int, seconds: int, rounds: int, connections: int) -> dict[str, object]:
    with fresh_postgresql() as url:
        asyncio.run(_load(url, persons))
        guarded = _lua_script(persons)
        bare = _lua_script(persons, "/bench/bare/")
        hello, read, plain = [], [], []
        with server(url, factory="bench.bare_app:create_app") as base:
            for script in (None, guarded, bare):  # warm-up
                wrk(f"{base}/api/v1/health/live" if script is None else base, seconds=2,
                    connections=connections, script=script)  # type: ignore[arg-type]  # fmt: skip
            for i in range(rounds):
                h = wrk(f"{base}/api/v1/health/live", seconds=seconds, connections=connections)
                r = wrk(base, seconds=seconds, connections=connections, script=guarded)  # type: ignore[arg-type]
                b = wrk(base, seconds=seconds, connections=connections, script=bare)  # type: ignore[arg-type]
                if h.errors or r.errors or b.errors:
                    raise SystemExit(f"errors under load: {h} {r} {b}")
                hello.append(h)
                read.append(r)
                plain.append(b)
                print(
                    f"round {i + 1}: hello {h.requests_per_s:,.0f}/s p99 {h.p99_ms:.1f} ms | "
                    f"read {r.requests_per_s:,.0f}/s p99 {r.p99_ms:.1f} ms | "
                    f"read without access control {b.requests_per_s:,.0f}/s p99 {b.p99_ms:.1f} ms"
                )
    result: dict[str, object] = {
        "machine": machine(),
        "hello_rps": statistics.median(h.requests_per_s for h in hello),
        "hello_p99_ms": statistics.median(h.p99_ms for h in hello),
        "read_rps": statistics.median(r.requests_per_s for r in read),
        "read_p99_ms": statistics.median(r.p99_ms for r in read),
        "bare_read_rps": statistics.median(b.requests_per_s for b in plain),
        "bare_read_p99_ms": statistics.median(b.p99_ms for b in plain),
    }
    result["ratio_read_to_hello"] = result["read_rps"] / result["hello_rps"]  # type: ignore[operator]
    result["access_control_overhead"] = result["bare_read_rps"] / result["read_rps"] - 1  # type: ignore[operator]
    print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    run(args.persons, args.seconds, args.rounds, args.connections)


if __name__ == "__main__":
    main()
