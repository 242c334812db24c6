"""Bulk NDJSON import of FHIR resources (`salud records import`): resources/s on PostgreSQL.

    .venv/bin/python -m bench.fhir_bulk --persons 20000 --per-person 10 --rounds 3

Synthetic persons are registered first (the person bulk import, not timed); then one NDJSON
file of their records is imported into the fresh database: per person an Encounter, then
Conditions with CIE-10 codes and heart-rate Observations that point at the Encounter and at
the person (every line with its id, references checked, nothing lenient), 5,000 lines per
chunk, lines checked in 2 worker processes (`--workers`). Each round also re-imports the
same file (every line already there, left alone).
Target (issue 5): 5,000 resources/s on this 2-core machine. Medians of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from bench.common import OUT, fresh_postgresql, machine, synthetic_file
from bench.fhir_http import visit
from salud.access.audit import AuditLog
from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.config import get_settings
from salud.identity import bulk as person_bulk
from salud.records import bulk
from salud.storage.engine import create_engine, session_factory


def _records(curp: str, n: int, per_person: int, rng: random.Random) -> list[dict[str, Any]]:
    """Person n's visit (bench.fhir_http.visit), every line with its id: enc-{n}, r-{n}-{i}."""
    out = visit(curp, f"Encounter/enc-{n}", per_person, rng)
    out[0]["id"] = f"enc-{n}"
    for i, resource in enumerate(out[1:]):
        resource["id"] = f"r-{n}-{i}"
    return out


def records_file(persons_file: Path, per_person: int) -> tuple[Path, int]:
    path = OUT / f"fhir-{persons_file.stem}-{per_person}.ndjson"
    with persons_file.open("rb") as fh:
        curps = [orjson.loads(line)["curp"] for line in fh]
    if not path.exists():
        rng = random.Random(5)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            for n, curp in enumerate(curps):
                for resource in _records(curp, n, per_person, rng):
                    out.write(orjson.dumps(resource) + b"\n")
        tmp.rename(path)
    return path, len(curps) * per_person


async def _import(
    url: str, path: Path, chunk: int, workers: int
) -> tuple[float, bulk.ImportReport, int]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    audit = AuditLog(sessions, get_settings().audit_key.get_secret_value().encode())
    principal = Principal("cli:bench", "importacion:bench", Role.CLIENT, 2, "HGIMS000010",
                          scopes=frozenset({"system/*.write"}))  # fmt: skip
    try:
        start = time.perf_counter()
        report = await bulk.import_lines(
            sessions, Caller(principal, audit), bulk.ndjson_lines(path), source=path.name,
            chunk_size=chunk, workers=workers,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        async with engine.connect() as conn:
            size = await conn.scalar(
                text(
                    "SELECT sum(pg_total_relation_size(t)) FROM unnest(ARRAY['fhir_resources', "
                    "'fhir_resource_versions', 'fhir_tokens', 'fhir_references', 'fhir_dates']"
                    "::regclass[]) AS t"
                )
            )
        return seconds, report, int(size or 0)
    finally:
        await engine.dispose()


async def _persons(url: str, path: Path) -> None:
    engine = create_engine(url)
    try:
        key = get_settings().audit_key.get_secret_value().encode()
        await person_bulk.import_file(
            session_factory(engine), path, actor="bench", audit_key=key, workers=2
        )
    finally:
        await engine.dispose()


def run(persons: int, per_person: int, rounds: int, chunk: int, workers: int) -> dict[str, object]:
    people = synthetic_file(persons)
    path, total = records_file(people, per_person)
    rates, again_rates, sizes = [], [], []
    for i in range(rounds):
        with fresh_postgresql() as url:
            asyncio.run(_persons(url, people))
            seconds, report, size = asyncio.run(_import(url, path, chunk, workers))
            assert (report.created, report.rejected) == (total, 0), report.rejects[:3]
            rates.append(total / seconds)
            sizes.append(size / total)
            seconds2, again, _ = asyncio.run(_import(url, path, chunk, workers))
            assert again.unchanged == total, again
            again_rates.append(total / seconds2)
            print(f"round {i + 1}: {total:,} in {seconds:.1f}s = {total / seconds:,.0f}/s; "
                  f"re-run {total / seconds2:,.0f}/s; {size / total:,.0f} B/resource")  # fmt: skip
    results: dict[str, object] = {
        "machine": machine(), "resources": total, "persons": persons, "chunk": chunk,
        "workers": workers,
        "import_median_per_s": round(statistics.median(rates)),
        "rerun_median_per_s": round(statistics.median(again_rates)),
        "bytes_per_resource": round(statistics.median(sizes)),
    }  # fmt: skip
    print(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--per-person", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=2, help="processes that check lines")
    args = parser.parse_args()
    run(args.persons, args.per_person, args.rounds, args.chunk, args.workers)


if __name__ == "__main__":
    main()
