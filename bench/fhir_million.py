"""Issue 5's FHIR benchmarks in one run, on PostgreSQL with 1 M resources stored.

    .venv/bin/python -m bench.fhir_million --persons 100000 --per-person 10 --seconds 10 --rounds 3

1. Bulk import: synthetic persons registered with the person bulk import (not timed), then
   their records loaded with `salud records import`'s code (bench.fhir_bulk's file: per
   person an Encounter, Conditions with CIE-10 codes, heart-rate Observations): resources/s.
2. Transaction ingest into that store: `--tx-persons` other visits posted as transaction
   Bundles (bench.fhir_http's, 4 clients), resources/s.
3. Reads and searches: a clinician gets a care relationship with 2,000 sampled persons; wrk
   (1 thread, 32 connections) alternates hello-world, `GET /fhir/Observation/{id}` and
   `GET /fhir/Condition?patient=CURP&code=E11.9` for those persons. Medians of the rounds;
   p95 from wrk's own latency histogram.
4. Bytes stored per resource, indexes included, at the end.
Targets (issue 5): bulk 5,000/s, transactions 2,000/s, read at least 40 % of hello-world,
search p95 reported, storage under 2 KB per resource.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from bench import fhir_http
from bench.common import OUT, _ms, fresh_postgresql, machine, server, synthetic_file
from bench.fhir_bulk import _import, _persons, records_file

SAMPLE = 2000
_P95 = 'done = function(summary, latency, requests)\n  io.write(string.format("p95us %d\\n", latency:percentile(95)))\nend\n'  # noqa: E501


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int


def _script(name: str, paths: list[str] | None) -> Path:
    """bench.fhir_http's request script (or none, for hello-world) with a p95 report."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = Path(fhir_http._script(name, paths)) if paths is not None else OUT / f"{name}.lua"
    text = path.read_text() if paths is not None else ""
    path.write_text(text + _P95)
    return path


def _wrk(url: str, script: Path, seconds: int) -> Run:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the HTTP benchmarks: apt-get install wrk")
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p95 = int(re.search(r"p95us (\d+)", out).group(1)) / 1000  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(rps, p50, p95, p99, int(bad.group(1)) if bad else 0)


async def _care(base: str, curps: list[str]) -> None:
    headers = {"Authorization": f"Bearer {fhir_http._token()}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        queue = list(curps)

        async def worker() -> None:
            while queue:
                curp = queue.pop()
                r = await http.post(
                    f"/api/v1/persons/{curp}/care-relationships", json={"hours": 72}
                )
                assert r.status_code == 201, r.text

        await asyncio.gather(*(worker() for _ in range(8)))


def run(
    persons: int, per_person: int, seconds: int, rounds: int, tx_persons: int = 1000
) -> dict[str, object]:
    people = synthetic_file(persons)
    path, total = records_file(people, per_person)
    with people.open("rb") as fh:
        curps = [orjson.loads(line)["curp"] for line in fh]
    sample = random.Random(11).sample(range(len(curps)), min(SAMPLE, len(curps) // 2))
    with fresh_postgresql() as url:
        asyncio.run(_persons(url, people))
        took, report, size = asyncio.run(_import(url, path, 5000, 2))
        assert report.created == total, report
        print(f"loaded {total:,} resources in {took:.0f} s ({total / took:,.0f}/s), "
              f"{size / total:,.0f} B each")  # fmt: skip
        with server(url) as base:
            # Transactions into the loaded store, for persons outside the read sample.
            chosen = set(sample)
            others = [c for n, c in enumerate(curps) if n not in chosen][:tx_persons]
            ingest, _ = asyncio.run(fhir_http._ingest(base, others, per_person))
            print(f"transactions: {len(others) * per_person:,} resources at {ingest:,.0f}/s")
            asyncio.run(_care(base, [curps[n] for n in sample]))
            # r-{n}-1 is the first Observation of person n (bench.fhir_bulk._records).
            reads = _script("fhir_read_1m", [f"/fhir/Observation/r-{n}-1" for n in sample])
            searches = _script(
                "fhir_search_1m", [f"/fhir/Condition?patient={curps[n]}&code=E11.9" for n in sample]
            )
            hello_script = _script("hello_1m", None)
            for script in (reads, searches):
                _wrk(base, script, 2)  # warm-up
            hello, read, search = [], [], []
            for i in range(rounds):
                h = _wrk(f"{base}/api/v1/health/live", hello_script, seconds)
                r = _wrk(base, reads, seconds)
                s = _wrk(base, searches, seconds)
                hello.append(h)
                read.append(r)
                search.append(s)
                print(f"round {i + 1}: hello {h.rps:,.0f}/s | read {r.rps:,.0f}/s "
                      f"p95 {r.p95_ms:.1f} ms | search {s.rps:,.0f}/s p95 {s.p95_ms:.1f} ms "
                      f"| non-2xx {r.errors + s.errors}")  # fmt: skip
        count, stored = asyncio.run(fhir_http._size(url))
    med = statistics.median
    result: dict[str, object] = {
        "machine": machine(), "resources": count, "bulk_per_s": total / took,
        "transaction_per_s": ingest, "bytes_per_resource": stored / count,
        "hello_rps": med(h.rps for h in hello), "read_rps": med(r.rps for r in read),
        "read_p95_ms": med(r.p95_ms for r in read), "read_p99_ms": med(r.p99_ms for r in read),
        "search_rps": med(s.rps for s in search), "search_p50_ms": med(s.p50_ms for s in search),
        "search_p95_ms": med(s.p95_ms for s in search),
        "search_p99_ms": med(s.p99_ms for s in search),
    }  # fmt: skip
    result["read_over_hello"] = result["read_rps"] / result["hello_rps"]  # type: ignore[operator]
    print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--per-person", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tx-persons", type=int, default=1000, help="visits posted as Bundles")
    args = parser.parse_args()
    run(args.persons, args.per_person, args.seconds, args.rounds, args.tx_persons)


if __name__ == "__main__":
    main()
