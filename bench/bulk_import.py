"""Bulk import of synthetic persons: persons/s into PostgreSQL and SQLite.

    .venv/bin/python -m bench.bulk_import --count 1000000

Target (issue 2): at least 20,000 persons/s into PostgreSQL on the 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from bench.common import fresh_postgresql, fresh_sqlite, machine, synthetic_file
from salud.identity import bulk
from salud.storage.engine import create_engine, session_factory


async def _import(
    url: str, path: Path, chunk: int, workers: int
) -> tuple[float, bulk.ImportReport]:
    engine = create_engine(url)
    try:
        start = time.perf_counter()
        report = await bulk.import_file(
            session_factory(engine),
            path,
            actor="bench",
            audit_key=b"bench-audit-key",
            chunk_size=chunk,
            workers=workers,
        )
        return time.perf_counter() - start, report
    finally:
        await engine.dispose()


def run(count: int, sqlite_count: int, repeats: int, chunk: int, workers: int) -> dict[str, object]:
    t0 = time.perf_counter()
    path = synthetic_file(count)
    small = synthetic_file(sqlite_count) if sqlite_count != count else path
    print(f"synthetic files ready in {time.perf_counter() - t0:.1f}s")
    results: dict[str, object] = {"machine": machine(), "count": count}
    pg_rates = []
    for i in range(repeats):
        with fresh_postgresql() as url:
            seconds, report = asyncio.run(_import(url, path, chunk, workers))
            assert report.inserted == count, report
            pg_rates.append(count / seconds)
            print(f"postgresql run {i + 1}: {count:,} in {seconds:.1f}s = {count / seconds:,.0f}/s")
            # Re-import the same file: nothing added.
            seconds2, again = asyncio.run(_import(url, path, chunk, workers))
            assert again.inserted == 0
            assert again.already_present == count
            print(f"  re-run of the same file: {seconds2:.1f}s, 0 added")
    sqlite_rates = []
    for i in range(repeats):
        with fresh_sqlite() as url:
            seconds, report = asyncio.run(_import(url, small, chunk, 0))
            assert report.inserted == sqlite_count, report
            sqlite_rates.append(sqlite_count / seconds)
            print(
                f"sqlite run {i + 1}: {sqlite_count:,} in {seconds:.1f}s"
                f" = {sqlite_count / seconds:,.0f}/s"
            )
    results["postgresql_median_per_s"] = statistics.median(pg_rates)
    results["sqlite_median_per_s"] = statistics.median(sqlite_rates)
    print(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--sqlite-count", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=2, help="PostgreSQL worker processes")
    args = parser.parse_args()
    run(args.count, args.sqlite_count or args.count, args.repeats, args.chunk, args.workers)


if __name__ == "__main__":
    main()
