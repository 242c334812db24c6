"""The enrollment planner (pure: no database) and `salud plan`.

Hypothesis checks the model's invariants and compares the vectorised arrivals with a plain,
person-by-person reading of the calendar (`Calendar`, `Rule.covers`, `age_on`,
`state_open`, `weekday_open`); a few small cases are worked out by hand."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from salud.access.permissions import Role
from salud.cli.main import app
from salud.enrollment.calendar import (
    LETTERS,
    MAX_AGE,
    Calendar,
    Phase,
    Rule,
    age_on,
    state_open,
    weekday_open,
)
from salud.enrollment.planner import (
    Flag,
    Projection,
    bucket_birthday,
    by_state,
    compare,
    project,
)
from salud.enrollment.planner_inputs import (
    CENSUS_2020_AGE_GROUPS,
    SYNTH_SURNAME_INITIALS,
    Assumptions,
    PlannedModule,
    load_calendar_plan,
    older_adults_first_calendar,
    read_modules_csv,
    read_population,
    synthetic_modules,
)
from salud.identity import curp
from salud.identity.synth import _AGE_GROUPS, _names
from salud.kit.clock import today_mx

MONDAY = date(2027, 1, 4)


def shares(
    letters: Mapping[str, float], ages: Mapping[int, float], buckets: int = 1, **kw: float
) -> Assumptions:
    letter_shares = np.array([letters.get(c, 0.0) for c in LETTERS])
    age_shares = np.zeros(MAX_AGE + 1)
    for age, share in ages.items():
        age_shares[age] = share
    return Assumptions(age_shares, letter_shares, birthday_buckets=buckets, **kw)  # type: ignore[arg-type]


ONE_COHORT = shares({"A": 1}, {30: 1})


def everyone(first: date, last: date, name: str = "todos") -> Calendar:
    return Calendar(name=name, rules=[Rule(starts_on=first, ends_on=last)])


def hidalgo(capacity: int, weekdays: str = "12345") -> list[PlannedModule]:
    return [PlannedModule(area="13", capacity=capacity, weekdays=weekdays)]


def opened(day: date = MONDAY, states: Sequence[str] = ("13",)) -> list[Phase]:
    return [Phase(name="f", starts_on=day, states=list(states))]


# --- small cases worked out by hand -------------------------------------------------------


def test_enough_capacity_serves_everyone_on_the_day_they_come() -> None:
    # 30 people allowed Monday to Wednesday come 10 a day; 10 a day are served.
    p = project(hidalgo(10), everyone(MONDAY, MONDAY + timedelta(2)), opened(), {"13": 30},
                MONDAY, 14, ONE_COHORT)  # fmt: skip
    r = p.result("13")
    assert p.arrivals[0, :3].tolist() == pytest.approx([10, 10, 10])
    assert p.served[0, :3].tolist() == pytest.approx([10, 10, 10])
    assert (r.days_to_finish, r.finish_day) == (3, date(2027, 1, 6))
    assert r.peak_queue == pytest.approx(0)
    assert r.peak_day is None
    assert r.utilisation == pytest.approx(1.0)
    assert r.flags == frozenset()


def test_a_queue_forms_and_drains_on_working_days() -> None:
    # Capacity 5: the queue is 5, 10, 15 Monday to Wednesday, 10 and 5 on Thursday and
    # Friday, still 5 over the weekend (closed), and empty on the next Monday.
    p = project(hidalgo(5), everyone(MONDAY, MONDAY + timedelta(2)), opened(), {"13": 30},
                MONDAY, 14, shares({"A": 1}, {30: 1}, queue_alert_days=2))  # fmt: skip
    r = p.result("13")
    assert p.queue[0, :8].tolist() == pytest.approx([5, 10, 15, 10, 5, 5, 5, 0])
    assert p.served[0, 5:7].tolist() == [0, 0]
    assert (r.days_to_finish, r.finish_day) == (8, date(2027, 1, 11))
    assert r.peak_queue == pytest.approx(15)
    assert r.peak_day == date(2027, 1, 6)
    assert r.peak_queue_days == pytest.approx(3)
    assert r.utilisation == pytest.approx(1.0)  # 30 served of 6 working days × 5
    # Alert at 2 days of capacity (10 people): only Wednesday's 15 exceeds it.
    assert [(e.first_day, e.last_day) for e in r.episodes] == [(MONDAY + timedelta(2),) * 2]
    assert Flag.QUEUE in r.flags


def test_a_state_opening_after_the_window_gets_everyone_on_its_first_day() -> None:
    p = project(hidalgo(10), everyone(MONDAY, MONDAY + timedelta(2)),
                opened(MONDAY + timedelta(3)), {"13": 30}, MONDAY, 14, ONE_COHORT)  # fmt: skip
    r = p.result("13")
    assert r.opens_on == date(2027, 1, 7)
    assert p.arrivals[0, 3] == pytest.approx(30)
    assert r.peak_queue == pytest.approx(20)
    assert r.peak_day == date(2027, 1, 7)
    assert (r.days_to_finish, r.finish_day) == (8, date(2027, 1, 11))  # Thu, Fri, Mon
    assert r.late == pytest.approx(30)
    assert Flag.LATE in r.flags


def test_people_enter_an_age_window_on_their_birthday() -> None:
    # 100 people aged 59 on Monday 4 January 2027, half with their birthday on 5 January
    # (bucket 0 of 2) and half on 6 July. "60 or more" that week lets the first half come
    # Tuesday to Friday (12.5 a day); the others wait for the open week of 2 August.
    assert bucket_birthday(MONDAY, 0, 2) == date(2027, 1, 5)
    assert bucket_birthday(MONDAY, 1, 2) == date(2027, 7, 6)
    august = date(2027, 8, 2)
    calendar = Calendar(name="mayores", rules=[
        Rule(starts_on=MONDAY, ends_on=MONDAY + timedelta(4), min_age=60),
        Rule(starts_on=august, ends_on=august + timedelta(4)),
    ])  # fmt: skip
    p = project(hidalgo(100), calendar, opened(), {"13": 100}, MONDAY, 300,
                shares({"A": 1}, {59: 1}, buckets=2))  # fmt: skip
    assert p.arrivals[0, :5].tolist() == pytest.approx([0, 12.5, 12.5, 12.5, 12.5])
    offset = (august - MONDAY).days
    assert p.arrivals[0, offset : offset + 5].tolist() == pytest.approx([10] * 5)
    r = p.result("13")
    assert r.finish_day == august + timedelta(4)
    assert r.days_to_finish == offset + 5
    assert r.late == 0


def test_people_without_a_day_in_the_calendar_are_reported() -> None:
    only_b = Calendar(name="B", rules=[Rule(starts_on=MONDAY, ends_on=MONDAY, letters="B")])
    p = project(hidalgo(1000), only_b, opened(), {"13": 200}, MONDAY, 30,
                shares({"A": 1, "B": 1}, {30: 1}))  # fmt: skip
    r = p.result("13")
    assert r.served == pytest.approx(100)
    assert r.not_called == pytest.approx(100)
    assert r.not_arrived == pytest.approx(100)
    assert not r.finished
    assert r.days_to_finish is None
    assert {Flag.NOT_CALLED, Flag.UNFINISHED} <= r.flags


def test_municipalities_without_a_module_are_flagged() -> None:
    modules = [PlannedModule(area="13048", capacity=100)]
    p = project(modules, everyone(MONDAY, MONDAY + timedelta(9)), opened(),
                {"13048": 500, "13001": 50}, MONDAY, 30, ONE_COHORT)  # fmt: skip
    assert p.areas == ("13001", "13048")
    assert p.result("13048").finished
    lonely = p.result("13001")
    assert lonely.served == 0
    assert {Flag.NO_CAPACITY, Flag.UNFINISHED} <= lonely.flags
    with pytest.raises(ValueError, match="módulos con clave de entidad"):
        project(hidalgo(10), everyone(MONDAY, MONDAY), opened(), {"13048": 5}, MONDAY, 5)
    with pytest.raises(ValueError, match="todas de entidad"):
        project(hidalgo(10), everyone(MONDAY, MONDAY), opened(), {"13048": 5, "13": 1}, MONDAY, 5)


def test_a_phase_that_opens_municipalities_opens_their_areas_only() -> None:
    """As booking's Phase.opens: a regional pilot opens its municipalities, not the state."""
    modules = [PlannedModule(area="13048", capacity=100), PlannedModule(area="13001", capacity=100)]
    pilot = [Phase(name="piloto", starts_on=MONDAY, municipalities=["13048"])]
    p = project(modules, everyone(MONDAY, MONDAY + timedelta(9)), pilot,
                {"13048": 500, "13001": 50}, MONDAY, 30, ONE_COHORT)  # fmt: skip
    assert p.result("13048").finished
    assert p.result("13048").opens_on == MONDAY
    assert state_open(pilot, "13", MONDAY, "048")
    closed = p.result("13001")
    assert (closed.served, closed.opens_on) == (0, None)
    assert not state_open(pilot, "13", MONDAY, "001")


def test_a_states_modules_serve_every_municipality_of_it() -> None:
    """By default the areas are states: booking lets a person book at any open module, so a
    module keyed by municipality serves its whole state, and a regional pilot opens only its
    own municipalities' modules in the pool."""
    window = everyone(MONDAY, MONDAY + timedelta(9))
    pachuca = [PlannedModule(area="13048", capacity=100)]
    p = project(pachuca, window, opened(), {"13": 550, "09": 10}, MONDAY, 30, ONE_COHORT)
    assert p.areas == ("09", "13")
    state = p.result("13")
    assert state.finished
    assert state.served == pytest.approx(550)
    assert Flag.NO_CAPACITY in p.result("09").flags
    two = [*pachuca, PlannedModule(area="13001", capacity=100)]
    pilot = [Phase(name="piloto", starts_on=MONDAY, municipalities=["13048"])]
    piloted = project(two, window, pilot, {"13": 550}, MONDAY, 30, ONE_COHORT)
    assert piloted.capacity[0, :6].tolist() == [100] * 6  # Acatlán's module waits
    assert (
        project(two, window, opened(), {"13": 550}, MONDAY, 30, ONE_COHORT).capacity[0, :6].tolist()
        == [200] * 6
    )


def test_states_summed_from_municipalities_finish_with_their_last_one() -> None:
    window = everyone(MONDAY, MONDAY + timedelta(9))
    towns = {"13048": 500, "13001": 50, "09015": 20}
    alone = [PlannedModule(area="13048", capacity=100), PlannedModule(area="09015", capacity=5)]
    p = project(alone, window, opened(states=("13", "09")), towns, MONDAY, 90, ONE_COHORT)
    summed = by_state(p, {"13": "Hidalgo"})
    assert summed.areas == ("09", "13")
    hidalgo_ = summed.result("13")
    assert (hidalgo_.name, hidalgo_.population) == ("Hidalgo", 550)
    assert hidalgo_.served == pytest.approx(500)  # Acatlán (13001) has no module
    assert not hidalgo_.finished
    assert Flag.UNFINISHED in hidalgo_.flags
    assert summed.result("09").days_to_finish == p.result("09015").days_to_finish

    both = [*alone, PlannedModule(area="13001", capacity=1)]
    p = project(both, window, opened(states=("13", "09")), towns, MONDAY, 90, ONE_COHORT)
    summed = by_state(p)
    last = p.result("13001")  # 50 people, one a day: it finishes long after Pachuca
    assert last.finished
    assert last.days_to_finish is not None
    assert p.result("13048").days_to_finish is not None
    assert last.days_to_finish > p.result("13048").days_to_finish
    hidalgo_ = summed.result("13")
    assert (hidalgo_.days_to_finish, hidalgo_.finish_day) == (last.days_to_finish, last.finish_day)
    for series in ("capacity", "arrivals", "served", "queue"):
        rows = [p.areas.index(k) for k in ("13001", "13048")]
        expected = getattr(p, series)[rows].sum(axis=0)
        assert getattr(summed, series)[1].tolist() == pytest.approx(expected.tolist())
    assert by_state(summed) is summed  # already by state


def test_a_long_window_is_spread_over_its_first_weeks_only() -> None:
    year = everyone(MONDAY, MONDAY + timedelta(364))
    p = project(hidalgo(1000, "1234567"), year, opened(), {"13": 420}, MONDAY, 365,
                shares({"A": 1}, {30: 1}, spread_days=42))  # fmt: skip
    assert p.arrivals[0, :42].tolist() == pytest.approx([10] * 42)
    assert p.arrivals[0, 42:].sum() == 0


def test_comparison_is_second_minus_first() -> None:
    slow = everyone(MONDAY, MONDAY + timedelta(4), "semana")
    fast = everyone(MONDAY, MONDAY, "un día")
    args = (hidalgo(100), opened(), {"13": 100}, MONDAY, 30, ONE_COHORT)
    a, b = project(args[0], slow, *args[1:]), project(args[0], fast, *args[1:])
    (row,) = compare(a, b)
    assert (row.first.days_to_finish, row.second.days_to_finish) == (5, 1)
    assert row.days_difference == -4
    assert row.peak_queue_difference == pytest.approx(0)
    other = project(hidalgo(100), slow, opened(), {"13": 100, "14": 5}, MONDAY, 30, ONE_COHORT)
    with pytest.raises(ValueError, match="mismas áreas"):
        compare(a, other)


# --- inputs and assumptions ---------------------------------------------------------------


def test_default_shares_are_the_synthetic_generators() -> None:
    """The age table is the generator's, and the initials are the CURP letters of its
    surname list (so a plan matches the synthetic population)."""
    assert [g for g, _ in _AGE_GROUPS] == list(CENSUS_2020_AGE_GROUPS)
    surnames = _names()[4]
    letters = Counter(
        curp.generate("Juan", s, None, date(1990, 1, 1), "H", "HG")[0] for s in surnames
    )
    assert {k: v for k, v in SYNTH_SURNAME_INITIALS.items() if v} == dict(letters)
    a = Assumptions()
    assert a.age_shares.sum() == pytest.approx(1)
    assert a.age_shares[60:].sum() == pytest.approx(
        sum(CENSUS_2020_AGE_GROUPS[12:]) / sum(CENSUS_2020_AGE_GROUPS)
    )
    assert a.letter_shares[LETTERS.index("C")] == pytest.approx(letters["C"] / len(surnames))


def test_population_is_read_from_the_inegi_file(shared_data: Path) -> None:
    states = read_population(shared_data / "inegi")
    towns = read_population(shared_data / "inegi", by_municipality=True)
    assert sorted(states.counts) == [f"{i:02d}" for i in range(1, 33)]
    assert states.total == towns.total
    with (shared_data / "inegi" / "municipios_inegi.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(towns.counts) == len(rows)
    assert states.counts["09"] == sum(
        int(r["poblacion_total"]) for r in rows if r["cve_entidad"] == "09"
    )
    with pytest.raises(FileNotFoundError, match="SALUD_SHARED_DATA_DIR"):
        read_population(shared_data / "no-existe")


@given(st.dictionaries(st.sampled_from([f"{i:02d}" for i in range(1, 33)]),
                       st.integers(0, 10**7), min_size=1),
       st.integers(32, 5000))  # fmt: skip
def test_synthetic_modules_follow_population(population: dict[str, int], total: int) -> None:
    populated = {k: v for k, v in population.items() if v > 0}
    if not populated:
        assert synthetic_modules(population, total) == []
        return
    modules = synthetic_modules(population, total, capacity=120)
    per_area = Counter(m.area for m in modules)
    assert sum(per_area.values()) == total
    assert set(per_area) == set(populated)
    people = sum(populated.values())
    for area, people_here in populated.items():
        quota = total * people_here / people
        assert per_area[area] >= 1
        assert per_area[area] <= max(1, int(quota) + 1)


def test_module_and_calendar_files_say_what_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "m.csv"
    good.write_text("clave,capacidad,dias,nombre\n13,120,123456,Pachuca\n9,80,12345,\n")
    assert [(m.area, m.capacity, m.weekdays) for m in read_modules_csv(good)] == [
        ("13", 120, "123456"), ("09", 80, "12345")]  # fmt: skip
    bad = tmp_path / "malo.csv"
    bad.write_text("clave,capacidad,dias\n13,120,123456\n13,120,8\n")
    with pytest.raises(ValueError, match=r"malo.csv, línea 3: weekdays"):
        read_modules_csv(bad)
    short = tmp_path / "corto.csv"  # a line with fewer cells than the header: an AttributeError
    short.write_text("clave,capacidad,dias\n13,100\n")
    with pytest.raises(ValueError, match=r"corto\.csv, línea 2: falta dias"):
        read_modules_csv(short)
    plan = tmp_path / "plan.json"
    calendar = older_adults_first_calendar(MONDAY)
    plan.write_bytes(orjson.dumps({"calendar": calendar.model_dump(mode="json"),
                                   "phases": [opened()[0].model_dump(mode="json")]}))  # fmt: skip
    assert load_calendar_plan(plan) == (calendar, opened())
    plain = tmp_path / "cal.json"
    plain.write_bytes(orjson.dumps(calendar.model_dump(mode="json")))
    assert load_calendar_plan(plain) == (calendar, None)
    broken = tmp_path / "roto.json"
    broken.write_bytes(
        b'{"name": "x", "rules": [{"starts_on": "2027-01-05", "ends_on": "2027-01-01"}]}'
    )
    with pytest.raises(ValueError, match=r"roto\.json: .*termina antes de empezar"):
        load_calendar_plan(broken)


# --- properties ---------------------------------------------------------------------------

STATES = ("01", "09", "13")
LETTER_SPECS = ("A-Z", "A", "B", "A-B", "C-M", "A,C", "M-Z")


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[PlannedModule], Calendar, list[Phase], dict[str, int], date, int, Assumptions]:
    start = draw(st.dates(date(2025, 1, 1), date(2030, 12, 31)))
    horizon = draw(st.integers(1, 70))
    day = st.integers(-15, horizon + 5).map(lambda n: start + timedelta(days=n))
    weekdays = st.sets(st.sampled_from("1234567"), min_size=1).map(lambda s: "".join(sorted(s)))
    modules = draw(st.lists(st.builds(PlannedModule, area=st.sampled_from(STATES),
                                      capacity=st.integers(0, 60), weekdays=weekdays),
                            max_size=4))  # fmt: skip
    rules = []
    for _ in range(draw(st.integers(1, 4))):
        first, length = draw(day), draw(st.integers(0, 40))
        low = draw(st.sampled_from([0, 17, 18, 59, 60, 129, 130]))
        high = draw(st.integers(low, MAX_AGE))
        spec = draw(st.sampled_from(LETTER_SPECS))
        ends = first + timedelta(days=length)
        rules.append(Rule(starts_on=first, ends_on=ends, letters=spec, min_age=low, max_age=high))
    phases = [
        Phase(name="f", starts_on=first, ends_on=None if open_end else first + timedelta(days=n),
              states=sorted(states))
        for first, open_end, n, states in draw(st.lists(st.tuples(
            day, st.booleans(), st.integers(0, 30), st.sets(st.sampled_from(STATES), min_size=1)),
            max_size=3))
    ]  # fmt: skip
    population = draw(st.dictionaries(st.sampled_from(STATES), st.integers(0, 500), min_size=1))
    letters = draw(st.dictionaries(st.sampled_from("ABCMZ"), st.integers(1, 5), min_size=1))
    ages = draw(st.dictionaries(st.sampled_from([0, 1, 17, 18, 59, 60, 64, 129, 130]),
                                st.integers(1, 5), min_size=1))  # fmt: skip
    a = shares(letters, ages, draw(st.integers(1, 6)), spread_days=draw(st.integers(1, 50)))
    return modules, Calendar(name="c", rules=rules), phases, population, start, horizon, a


Scenario = tuple[list[PlannedModule], Calendar, list[Phase], dict[str, int], date, int, Assumptions]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(s: Scenario) -> Projection:
    return project(*s)


@FAST
@given(scenarios())
def test_nobody_is_lost_and_capacity_is_never_exceeded(s: Scenario) -> None:
    p = run(s)
    modules, _, phases, population, start, horizon, _ = s
    for i, area in enumerate(p.areas):
        r = p.result(area)
        people = population.get(area, 0)
        assert r.served + r.waiting + r.not_arrived == pytest.approx(people, abs=1e-6)
        assert p.arrivals[i].sum() + r.not_arrived == pytest.approx(people, abs=1e-6)
        for d in range(horizon):
            day = start + timedelta(days=d)
            expected = sum(m.capacity for m in modules
                           if m.area == area and weekday_open(m.weekdays, day))  # fmt: skip
            if not state_open(phases, area, day):
                expected = 0
            assert p.capacity[i, d] == expected
            assert -1e-9 <= p.served[i, d] <= expected + 1e-9
            if expected == 0:  # closed weekday, before or after its phase, or no module
                assert p.arrivals[i, d] == 0
                assert p.served[i, d] == 0
            # Work-conserving: serve whoever waits, up to capacity.
            waiting = (p.queue[i, d - 1] if d else 0.0) + p.arrivals[i, d]
            assert p.served[i, d] == pytest.approx(min(expected, waiting), abs=1e-6)
            assert p.queue[i, d] == pytest.approx(waiting - p.served[i, d], abs=1e-6)


@FAST
@given(scenarios(), st.integers(2, 5))
def test_more_capacity_on_the_same_days_never_finishes_later(s: Scenario, factor: int) -> None:
    modules = s[0]
    bigger = [m.model_copy(update={"capacity": m.capacity * factor}) for m in modules]
    p, q = run(s), run((bigger, *s[1:]))
    assert np.all(q.served.cumsum(axis=1) >= p.served.cumsum(axis=1) - 1e-6)
    assert np.all(q.queue <= p.queue + 1e-6)
    for a, b in zip(p.results, q.results, strict=True):
        if a.finished:
            assert b.finished
            assert (b.days_to_finish or 0) <= (a.days_to_finish or 0)


def naive_arrivals(s: Scenario, working: list[bool], people: int) -> list[float]:
    """The model read person by person: each cohort's birth date, the first rule that covers
    it each day, its first window with a working day, spread over its first days (the
    working days themselves are checked against `state_open`/`weekday_open` above)."""
    _, calendar, _, _, start, horizon, a = s
    days = [start + timedelta(days=d) for d in range(horizon)]
    out = [0.0] * horizon
    for li, letter in enumerate(LETTERS):
        for age in range(MAX_AGE + 1):
            if not a.letter_shares[li] or not a.age_shares[age]:
                continue
            for b in range(a.birthday_buckets):
                birthday = bucket_birthday(start, b, a.birthday_buckets)
                birth = birthday.replace(year=birthday.year - age - 1)
                assert age_on(birth, start) == age
                share = people * a.letter_shares[li] * a.age_shares[age] / a.birthday_buckets
                rule = [next((k for k, r in enumerate(calendar.rules)
                              if r.covers(letter, age_on(birth, day), day)), None)
                        for day in days]  # fmt: skip
                runs: list[list[int]] = []
                current: list[int] | None = None
                for d in range(horizon):
                    if rule[d] is None:
                        current = None
                        continue
                    if current is None or rule[d] != rule[d - 1]:
                        current = []
                        runs.append(current)
                    current.append(d)
                window = next((r for r in runs if any(working[d] for d in r)), None)
                if window is not None:
                    first = next(d for d in window if working[d])
                    chosen = [d for d in window if working[d] and d < first + a.spread_days]
                    for d in chosen:
                        out[d] += share / len(chosen)
                elif runs:
                    later = [d for d in range(runs[0][0], horizon) if working[d]]
                    if later:
                        out[later[0]] += share
    return out


@FAST
@given(scenarios())
def test_arrivals_match_a_person_by_person_reading_of_the_calendar(s: Scenario) -> None:
    p = run(s)
    for i, area in enumerate(p.areas):
        expected = naive_arrivals(s, [c > 0 for c in p.capacity[i]], s[3].get(area, 0))
        assert p.arrivals[i].tolist() == pytest.approx(expected, abs=1e-6)


# --- the command line ---------------------------------------------------------------------


def test_plan_and_compare_from_the_command_line(shared_data: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    env = {"COLUMNS": "220"}
    inegi = str(shared_data / "inegi")
    written = cli.invoke(app, ["plan", "examples", "--out", str(tmp_path), "--start", "2027-01-04"])
    assert written.exit_code == 0, written.output
    calendar = tmp_path / "mayores-primero.json"
    assert load_calendar_plan(calendar)[0] == older_adults_first_calendar(MONDAY)

    modules = tmp_path / "modulos.csv"
    modules.write_text(
        "clave,capacidad,dias\n" + "".join(f"{i:02d},500,123456\n" for i in range(1, 32))
    )
    out = tmp_path / "comparacion.csv"
    result = cli.invoke(app, [
        "plan", "run", "--calendar", str(calendar), "--compare", "por-letra", "--modules",
        str(modules), "--start", "2027-01-04", "--csv", str(out), "--data-dir", inegi,
    ], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "Comparación por entidades: «Personas mayores primero» (A) y «Por letra» (B)"
        in result.output
    )
    assert "31 módulos, 15,500 personas por día" in result.output
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 32
    for row in rows:
        if row["dias_a"] and row["dias_b"]:
            assert int(row["dif_dias"]) == int(row["dias_b"]) - int(row["dias_a"])
    zacatecas = next(r for r in rows if r["clave"] == "32")  # no module in the file
    assert zacatecas["atendidas_a"] == "0"
    assert "no_capacity" in zacatecas["alertas_a"]

    single = cli.invoke(app, ["plan", "run", "--start", "2027-01-04", "--phases", "piloto",
                              "--limit", "3", "--data-dir", inegi], env=env)  # fmt: skip
    assert single.exit_code == 0, single.output
    assert "2,900 módulos, 348,000 personas por día" in single.output
    assert "Terminan al último" in single.output
    assert "llegan después de su ventana" in single.output

    bad_day = cli.invoke(app, ["plan", "run", "--start", "4/1/2027", "--data-dir", inegi])
    assert bad_day.exit_code == 2
    assert "no es una fecha" in bad_day.output
    broken = tmp_path / "roto.json"
    broken.write_text("{")
    bad_file = cli.invoke(app, ["plan", "run", "--calendar", str(broken), "--data-dir", inegi])
    assert bad_file.exit_code == 2
    assert "roto.json: no es JSON válido" in bad_file.output


def test_modules_of_municipalities_are_planned_by_state_unless_asked(
    shared_data: Path, tmp_path: Path
) -> None:
    """Three modules in two municipalities of Hidalgo and one of Mexico City: by default each
    state's modules serve all of it; --by-municipality plans each municipality with its own
    modules and gives the states' figures too."""
    cli = CliRunner()
    env = {"COLUMNS": "220"}
    inegi = shared_data / "inegi"
    modules = tmp_path / "modulos.csv"
    modules.write_text("clave,capacidad,dias\n13048,120,123456\n13001,120,123456\n"
                       "09015,120,123456\n")  # fmt: skip
    out = tmp_path / "plan.csv"
    base = ["plan", "run", "--modules", str(modules), "--start", "2027-01-04", "--csv",
            str(out), "--data-dir", str(inegi), "--horizon", "60"]  # fmt: skip

    def rows() -> list[dict[str, str]]:
        with out.open(encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    pooled = cli.invoke(app, base, env=env)
    assert pooled.exit_code == 0, pooled.output
    assert "Proyección por entidades" in pooled.output
    assert "Proyección por municipios" not in pooled.output
    states = rows()
    assert [r["clave"] for r in states] == [f"{i:02d}" for i in range(1, 33)]
    assert {r["nivel"] for r in states} == {"entidad"}
    by_key = {r["clave"]: r for r in states}
    assert by_key["13"]["capacidad_diaria"] == "240"  # both of Hidalgo's modules
    assert by_key["13"]["atendidas"] == str(240 * 52)  # busy every working day of 60
    assert "no_capacity" in by_key["01"]["alertas"]

    towns = cli.invoke(app, [*base, "--by-municipality"], env=env)
    assert towns.exit_code == 0, towns.output
    assert "Proyección por municipios" in towns.output
    assert "Proyección por entidades" in towns.output
    both = rows()
    municipal = [r for r in both if r["nivel"] == "municipio"]
    assert len(municipal) == len(read_population(inegi, by_municipality=True).counts)
    assert [r["clave"] for r in both if r["nivel"] == "entidad"] == list(by_key)
    hidalgo_ = next(r for r in both if r["clave"] == "13")
    assert int(hidalgo_["poblacion"]) == sum(
        int(r["poblacion"]) for r in municipal if r["clave"].startswith("13")
    )
    assert hidalgo_["capacidad_diaria"] == "240"
    assert "unfinished" in hidalgo_["alertas"]  # 82 of its 84 municipalities have no module

    by_state_key = tmp_path / "entidades.csv"
    by_state_key.write_text("clave,capacidad,dias\n13,120,123456\n")
    refused = cli.invoke(app, ["plan", "run", "--modules", str(by_state_key),
                               "--by-municipality", "--data-dir", str(inegi)])  # fmt: skip
    assert refused.exit_code == 2
    assert "--by-municipality: 1 módulos de --modules no tienen municipio" in one_line(refused)


def one_line(result: Any) -> str:
    return " ".join(result.output.split())


@pytest.mark.db
async def test_plan_from_the_drive_as_the_system_holds_it(
    anonymous: Any, drive: Any, token_for: Any, cli_env: CliRunner, shared_data: Path
) -> None:
    """`--from-db`: the stored modules (a closed one left out), the calendar in force (or a
    stored one by name, to compare), and the stored phases."""
    import asyncio

    from tests.enrollment.conftest import E

    ministry = token_for(Role.INSTITUTION_ADMIN)  # the calendars are the ministry's
    today = today_mx()
    older = {"starts_on": today.isoformat(), "ends_on": (today + timedelta(days=90)).isoformat(),
             "min_age": 60}  # fmt: skip
    second = {"name": "solo-mayores", "rules": [older]}
    assert (await anonymous.post(f"{E}/calendars", headers=ministry, json=second)).is_success
    closed = {"code": "MR-09-0777", "name": "Cerrado", "state": "09", "address": "Centro 1",
              "daily_capacity": 999}  # fmt: skip
    module_maker = token_for(Role.SUPERVISOR)  # the modules, a supervisor's (none of their own)
    assert (await anonymous.post(f"{E}/modules", headers=module_maker, json=closed)).is_success
    status = {"status": "closed"}
    assert (await anonymous.post(f"{E}/modules/MR-09-0777/status", headers=module_maker,
                                 json=status)).is_success  # fmt: skip
    inegi = str(shared_data / "inegi")

    def plan(*extra: str) -> Any:
        return cli_env.invoke(
            app,
            ["plan", "run", "--from-db", "--data-dir", inegi, "--horizon", "120", *extra],
            env={"COLUMNS": "220"},
        )

    alone = await asyncio.to_thread(plan)
    assert alone.exit_code == 0, alone.output
    assert "1 módulos, 120 personas por día" in alone.output  # the open one, not the closed
    assert "Proyección por entidades: todos" in alone.output  # the calendar in force
    both = await asyncio.to_thread(plan, "--compare", "solo-mayores")
    assert both.exit_code == 0, both.output
    assert "«todos» (A) y «solo-mayores» (B)" in both.output
    mixed = await asyncio.to_thread(plan, "--modules", "x.csv")
    assert mixed.exit_code == 2
    assert "elija una fuente" in mixed.output
    towns = await asyncio.to_thread(plan, "--by-municipality")  # the open one has 048
    assert towns.exit_code == 0, towns.output
    assert "Proyección por municipios: todos" in towns.output
    assert "Proyección por entidades: todos" in towns.output


@pytest.mark.db
async def test_plan_from_the_drive_needs_a_phase_as_booking_does(
    anonymous: Any, token_for: Any, cli_env: CliRunner, shared_data: Path, tmp_path: Path
) -> None:
    """Booking lets nobody book before a phase opens their state: with no stored phase the
    planner does not assume the whole country open, unless told to."""
    import asyncio

    from tests.enrollment.conftest import E

    today = today_mx()
    ministry = token_for(Role.INSTITUTION_ADMIN)
    rule = {"starts_on": today.isoformat(), "ends_on": (today + timedelta(days=30)).isoformat()}
    calendar = {"name": "todos", "active": True, "rules": [rule]}
    assert (await anonymous.post(f"{E}/calendars", headers=ministry, json=calendar)).is_success
    module = {"code": "MR-09-0001", "name": "Sin municipio", "state": "09",
              "address": "Centro 1, CDMX", "daily_capacity": 100}  # fmt: skip
    supervisor = token_for(Role.SUPERVISOR)
    assert (await anonymous.post(f"{E}/modules", headers=supervisor, json=module)).is_success
    inegi = str(shared_data / "inegi")

    def plan(*extra: str) -> Any:
        return cli_env.invoke(
            app, ["plan", "run", "--from-db", "--data-dir", inegi, "--horizon", "30", *extra],
            env={"COLUMNS": "220"},
        )  # fmt: skip

    refused = await asyncio.to_thread(plan)
    assert refused.exit_code == 2, refused.output
    said = one_line(refused)
    assert "Error: --from-db: no hay fases guardadas" in said
    assert "indique --phases" in said
    told = await asyncio.to_thread(plan, "--phases", "nacional")
    assert told.exit_code == 0, told.output
    assert "1 módulos, 100 personas por día" in told.output
    own = tmp_path / "con-fases.json"
    phase = {"name": "CDMX", "starts_on": today.isoformat(), "states": ["09"]}
    own.write_bytes(orjson.dumps({"calendar": {"name": "propio", "rules": [rule]},
                                  "phases": [phase]}))  # fmt: skip
    with_file = await asyncio.to_thread(plan, "--calendar", str(own))  # the file's phases
    assert with_file.exit_code == 0, with_file.output
    no_town = await asyncio.to_thread(plan, "--phases", "nacional", "--by-municipality")
    assert no_town.exit_code == 2
    assert "1 módulos de --from-db no tienen municipio (p. ej. MR-09-0001)" in one_line(no_town)
