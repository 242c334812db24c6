"""The enrollment planner's run time for the whole country, in process.

    .venv/bin/python -m bench.planner --rounds 9

INEGI 2020 population of the 32 states (126 M people) and the synthetic national module list
(2,900 modules × 120 people a day, Monday to Saturday), over a horizon of two years (730
days): one projection with each example calendar, the same with the pilot rollout by phases,
a comparison of the two calendars (two projections and the side-by-side table), and one
projection per municipality (2,469 areas). Figures are medians over rounds, after one warm-up.
Target (issue 6): the whole country well under a second.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import date

from bench.common import SHARED, machine
from salud.enrollment.calendar import Calendar, Phase
from salud.enrollment.planner import Projection, compare, project
from salud.enrollment.planner_inputs import (
    by_letter_calendar,
    national_phase,
    older_adults_first_calendar,
    pilot_phases,
    read_population,
    synthetic_modules,
)

START = date(2027, 1, 4)
HORIZON = 730


def _median_ms(work: Callable[[], object], rounds: int) -> float:
    work()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run(rounds: int) -> dict[str, float]:
    states = read_population(SHARED / "inegi")
    towns = read_population(SHARED / "inegi", by_municipality=True)
    modules = synthetic_modules(states.counts)
    town_modules = synthetic_modules(towns.counts)  # for timing: at least one per municipality
    seniors, letters = older_adults_first_calendar(START), by_letter_calendar(START)
    national, pilot = national_phase(START), pilot_phases(START, states.counts)

    def one(calendar: Calendar = seniors, phases: list[Phase] = national) -> Projection:
        return project(modules, calendar, phases, states.counts, START, HORIZON)

    cases: dict[str, Callable[[], object]] = {
        "country by state, 'older adults first'": one,
        "country by state, 'by letter'": lambda: one(letters),
        "country by state, pilot phases": lambda: one(seniors, pilot),
        "comparison of the two calendars": lambda: compare(one(), one(letters)),
        "country by municipality (2,469 areas)": lambda: project(
            town_modules, seniors, national, towns.counts, START, HORIZON
        ),
        "inputs: INEGI file + synthetic modules": lambda: synthetic_modules(
            read_population(SHARED / "inegi").counts
        ),
    }
    results: dict[str, float] = {}
    for name, work in cases.items():
        results[name] = _median_ms(work, rounds)
        print(f"{name:44s} {results[name]:>9.1f} ms (median of {rounds})")
    print(
        f"{states.total:,} people, {len(modules):,} modules, horizon {HORIZON} days; "
        f"{len(town_modules):,} modules by municipality"
    )
    print(machine())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    run(args.rounds)


if __name__ == "__main__":
    main()
