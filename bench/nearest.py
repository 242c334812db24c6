"""Nearest health units over the whole catalog, in process.

    .venv/bin/python -m bench.nearest --queries 20000 --rounds 5

Loads all the shared CLUES files into a fresh SQLite database (as `make run` does), builds
the in-memory index from it, and asks the k=5 nearest units from real INEGI localities
(population-weighted points all over Mexico). Figures are medians over rounds, one run.
Target (issue 2): at least 20,000 queries/s for a typical query (k=5, one institution).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import statistics
import time
from typing import Any

from bench.common import SHARED, fresh_sqlite, machine
from salud.facilities import service
from salud.facilities.nearest import NearestIndex, load_index
from salud.storage.engine import create_engine, session_factory

CASES: dict[str, dict[str, Any]] = {
    "IMSS-Bienestar (IMB), k=5": {"institutions": frozenset({"IMB"})},
    "IMSS (IMS), k=5": {"institutions": frozenset({"IMS"})},
    "any institution, k=5": {},
    "IMS or IMB/SSA/IMO (an IMSS affiliate), k=5": {
        "institutions": frozenset({"IMS", "IMB", "SSA", "IMO"})
    },
    "IMB open now, k=5": {"institutions": frozenset({"IMB"}), "open_now": True},
    "level 2 hospitals, k=5": {"level": 2},
}


async def _index() -> tuple[NearestIndex, int]:
    with fresh_sqlite() as url:
        engine = create_engine(url)
        sessions = session_factory(engine)
        start = time.perf_counter()
        await service.import_shared_catalog(sessions, SHARED)
        print(f"catalog imported in {time.perf_counter() - start:.1f}s")
        async with sessions() as session:
            index = await load_index(session)
        await engine.dispose()
    return index, len(index.institutions)


def _points(count: int) -> list[tuple[float, float]]:
    with (SHARED / "inegi" / "localidades_inegi.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = random.Random(11)
    weights = [int(r["poblacion_total"]) for r in rows]
    chosen = rng.choices(rows, weights=weights, k=count)
    return [(float(r["latitud"]), float(r["longitud"])) for r in chosen]


def run(queries: int, rounds: int) -> dict[str, float]:
    index, _ = asyncio.run(_index())
    points = _points(queries)
    results: dict[str, float] = {}
    for name, filters in CASES.items():
        rates = []
        for _ in range(rounds):
            start = time.perf_counter()
            for lat, lng in points:
                index.query(lat, lng, 5, **filters)
            rates.append(queries / (time.perf_counter() - start))
        results[name] = statistics.median(rates)
        print(f"{name:48s} {results[name]:>10,.0f} queries/s (median of {rounds})")
    print(machine())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run(args.queries, args.rounds)


if __name__ == "__main__":
    main()
