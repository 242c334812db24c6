"""The progress dashboard at scale: how long the figures take with many persons enrolled.

    .venv/bin/python -m bench.progress --persons 1000000 --rounds 5

PostgreSQL; `--persons` synthetic persons registered (the bulk importer), each enrolled
(completed) at one of 2,900 modules over the last 60 days, with an appointment kept, and a card
in one of the waiting states for a third of them (plain SQL, not timed). Then, alternating,
medians of the rounds:
- live: what the dashboard page asks (the country, one state's municipalities, 14 days of
  module throughput) counted from the tables, as every request did before the snapshots;
- snapshot: the same three answers from the latest snapshot, as requests do now;
- refresh: taking a snapshot (`progress.refresh`), which the server does in the background.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from sqlalchemy import text

from bench.common import SHARED, fresh_postgresql, machine, synthetic_file
from salud.access.audit import AuditLog
from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.enrollment import progress
from salud.identity import bulk
from salud.storage.engine import create_engine, session_factory

MODULES = 2900

_SETUP = [
    f"""INSERT INTO registration_modules (code, name, address, state, municipality, weekdays,
        opens_at, closes_at, daily_capacity, status, created_at, created_by)
        SELECT 'MOD-' || g, 'Módulo ' || g, 'Calle ' || g, lpad((1 + g % 32)::text, 2, '0'),
               '001', '123456', '08:00', '16:00', 120, 'open', now(), 'bench'
        FROM generate_series(1, {MODULES}) g""",
    """INSERT INTO appointments (folio, person_curp, module_id, day, status, booked_at,
        booked_by, changed_at)
        SELECT 'C' || lpad(p.id::text, 11, '0'), p.curp, 1 + p.id % 2900,
               current_date - (p.id % 60)::int, 'kept', now(), 'bench', now()
        FROM persons p""",
    """INSERT INTO enrollments (folio, person_curp, module_id, operator, status, visit_day,
        documents, waived, started_at, completed_at)
        SELECT 'R' || lpad(p.id::text, 13, '0'), p.curp, 1 + p.id % 2900, 'bench', 'completed',
               current_date - (p.id % 60)::int, '[]', '[]', now(), now()
        FROM persons p""",
    """INSERT INTO credentials (credential_id, person_curp, sequence, status, digital_active,
        reason, kid, qr_text, link_code, issued_at, expires_at, issued_by, status_changed_at,
        status_changed_by)
        SELECT 'K' || lpad(p.id::text, 20, '0'), p.curp, 1,
               (ARRAY['issued','printed','ready_for_pickup'])[1 + p.id / 3 % 3], true, 'first',
               'bench', 'HC1:', 'L' || lpad(p.id::text, 15, '0'), now(),
               now() + interval '10 years', 'bench', now(), 'bench'
        FROM persons p WHERE p.id % 3 = 0""",
    "ANALYZE",
]


async def _run(url: str, persons: int, rounds: int) -> dict[str, float]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    started = time.perf_counter()
    await bulk.import_file(
        sessions, synthetic_file(persons), actor="bench", audit_key=b"bench-audit-key", workers=2
    )
    async with engine.begin() as conn:
        for statement in _SETUP:
            await conn.execute(text(statement))
    print(f"set-up {time.perf_counter() - started:.0f} s", flush=True)
    audit = AuditLog(sessions, b"bench-audit-key")
    await audit.start()
    caller = Caller(Principal("account:1", "supervisora", Role.SUPERVISOR, 2), audit)
    inegi = SHARED / "inegi"

    async def page(snapshots: bool) -> None:
        """What the dashboard page asks: the country, a state's municipalities, 14 days."""
        async with sessions() as session:
            await progress.progress(session, caller, inegi, None, snapshots=snapshots)
            await progress.progress(session, caller, inegi, "09", snapshots=snapshots)
            await progress.throughput(session, caller, 14, None, snapshots=snapshots)

    async def live() -> None:
        await page(snapshots=False)

    async def snapshot() -> None:
        await page(snapshots=True)

    async def refresh() -> None:
        await progress.refresh(sessions)

    async def timed(fn: object) -> float:
        start = time.perf_counter()
        await fn()  # type: ignore[operator]
        return time.perf_counter() - start

    await refresh()
    await snapshot()  # warm-up
    figures: dict[str, list[float]] = {"live": [], "snapshot": [], "refresh": []}
    for i in range(rounds):
        for name, fn in (("live", live), ("snapshot", snapshot), ("refresh", refresh)):
            figures[name].append(await timed(fn))
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1] * 1000:,.1f} ms"
                                             for k, v in figures.items()), flush=True)  # fmt: skip
    await audit.close()
    await engine.dispose()
    result = {f"{k}_ms": statistics.median(v) * 1000 for k, v in figures.items()}
    print(result, machine())
    return result


def run(persons: int, rounds: int) -> dict[str, float]:
    with fresh_postgresql() as url:
        return asyncio.run(_run(url, persons, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run(args.persons, args.rounds)


if __name__ == "__main__":
    main()
