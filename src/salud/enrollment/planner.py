"""The enrollment planner: how many days each state (or municipality) needs, and where queues
form, for given modules, calendar, phases and population. Pure: no database, no clock.

The model, one *area* at a time, each day from `start` for `horizon` days. The areas are the
keys of the population: states (2 digits), where every module of the state serves all of its
people, as booking lets anyone book at any open module; or municipalities (5 digits), where
each municipality has only its own modules. A module keyed by municipality is pooled into its
state when the areas are states; `by_state` sums a projection by municipality into states.

* **Who may come.** The population is split into cohorts by the letter the calendar reads (the
  CURP's first character: first surname initial, Ñ as X), by single year of age on `start`,
  and by birthday (`Assumptions.birthday_buckets` equal parts of the year, the first birthday
  after `start` given by `bucket_birthday`). A cohort's age grows on its birthdays, so a
  person of 59 enters an "older adults" window on turning 60. `Calendar` rules decide, day by
  day, which cohorts are allowed, with the same rule models the booking uses.
* **When they come.** A cohort's *window* is its first run of consecutive days allowed by one
  rule (the first rule of the calendar that covers it) on which its area works (a phase
  opens the state that day, `Phase.opens`, and a module works that ISO weekday,
  `weekday_open`). The cohort comes spread evenly over the working days of its window, but
  within `Assumptions.spread_days` (42) days of its first working day: nobody waits months
  into a long open window to come. Later windows (a closing "everyone" period, say) only
  matter to cohorts whose earlier windows fell entirely on days the area did not work: they
  come in the first window that has working days, or, if none has, on the area's first
  working day after their first allowed day; both count as *late* (they keep their right to
  enrol). A cohort the calendar gives no day within the horizon does not come ("not
  called").
* **Who is served.** Everyone who came waits in one queue per area, first come first served;
  the area's modules working that day serve up to the sum of their daily capacities. People
  not served on their day keep their place and are served on a later day, outside their
  window if need be (a person who came is not sent home by the calendar). The queue is
  Lindley's recursion Q[d] = max(0, Q[d-1] + arrivals[d] - capacity[d]), computed for all
  areas and days at once with cumulative sums.

Counts are expected values (fractions of people); an area has finished when fewer than
`Assumptions.finish_tolerance` people remain unserved.

Population shares by age and by initial are *assumptions*: the INEGI municipal file gives only
totals. The defaults, both parameters (`Assumptions`):

* Age: national five-year shares of INEGI, Censo de Población y Vivienda 2020 (tabulados de
  población por grupos quinquenales de edad; 126.0 million people, 25 % under 15, 12 % aged
  60 or more), the same table the synthetic generator (`identity/synth.py`) uses; uniform
  within a group; 85 and over spread over ages 85 to 104, falling by e^(-1/6) a year. The
  same shares are applied to every area (states differ in reality: a known simplification).
* Initial: the initials the CURP takes from the 623 first surnames of the synthetic
  generator's list (Faker es_MX `last_names`, drawn uniformly by `identity/synth.py`), so the
  plan matches the synthetic population. Real surnames are far more concentrated (Hernández,
  García, Martínez, López…); once the registry holds people, pass the real counts of CURP
  first letters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from salud.enrollment.calendar import LETTERS, Calendar, Phase
from salud.enrollment.planner_inputs import AGES, Assumptions, Floats, PlannedModule

Bools = npt.NDArray[np.bool_]
Labels = npt.NDArray[np.int16]


def bucket_birthday(start: date, bucket: int, buckets: int) -> date:
    """The first birthday after `start` of the people in `bucket` (0 ≤ bucket < buckets):
    birthdays are spread evenly over the year that follows `start`. 29 February is moved to
    1 March, as `calendar.age_on` counts it."""
    day = start + timedelta(days=1 + (bucket * 365) // buckets)
    return day + timedelta(days=1) if (day.month, day.day) == (2, 29) else day


class Flag(StrEnum):
    QUEUE = "queue"  # the queue reached `queue_alert_days` days of capacity
    UNFINISHED = "unfinished"  # people still unserved at the end of the horizon
    NO_CAPACITY = "no_capacity"  # people but no working module within the horizon
    LATE = "late"  # people whose window passed before their area opened
    NOT_CALLED = "not_called"  # people the calendar gives no day within the horizon


@dataclass(frozen=True, slots=True)
class QueueEpisode:
    first_day: date
    last_day: date
    peak_queue: float


@dataclass(frozen=True, slots=True)
class AreaResult:
    area: str
    name: str
    population: int
    served: float
    waiting: float  # came and not served at the end of the horizon
    not_arrived: float  # not yet come at the end of the horizon
    finished: bool
    days_to_finish: int | None  # calendar days from `start`, both ends counted
    finish_day: date | None
    opens_on: date | None  # first day a module of the area works
    daily_capacity: float  # mean capacity of the area's working days
    peak_queue: float
    peak_day: date | None
    peak_queue_days: float  # peak queue in days of the area's mean working-day capacity
    utilisation: float  # served / capacity, until the finish (or the horizon)
    late: float
    not_called: float
    episodes: tuple[QueueEpisode, ...]
    flags: frozenset[Flag]


@dataclass(frozen=True, eq=False)
class Projection:
    calendar: str
    start: date
    horizon: int
    areas: tuple[str, ...]
    results: tuple[AreaResult, ...]
    # Per area (rows, in `areas` order) and day (columns): the series behind the results.
    capacity: Floats
    arrivals: Floats
    served: Floats
    queue: Floats

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)

    def result(self, area: str) -> AreaResult:
        return self.results[self.areas.index(area)]

    @property
    def last_finish(self) -> date | None:
        """The day the last area finishes; None when some area does not finish."""
        if not all(r.finished for r in self.results):
            return None
        days = [r.finish_day for r in self.results if r.finish_day is not None]
        return max(days) if days else None


def project(
    modules: Sequence[PlannedModule],
    calendar: Calendar,
    phases: Sequence[Phase],
    population: Mapping[str, int],
    start: date,
    horizon: int,
    assumptions: Assumptions | None = None,
    names: Mapping[str, str] | None = None,
) -> Projection:
    """Project enrollment in every area of `population` (and of `modules`) for `horizon` days."""
    a = assumptions or Assumptions()
    if not 1 <= horizon <= 3660:
        raise ValueError("horizonte: entre 1 y 3660 días")
    if not population and not modules:
        raise ValueError("sin población ni módulos: nada que planear")
    widths = {len(k) for k in population} or {len(m.area) for m in modules}
    if len(widths) != 1 or not widths <= {2, 5}:
        raise ValueError(
            "las claves de población y de módulos deben ser todas de entidad (2 dígitos) "
            "o todas de municipio (5 dígitos)"
        )
    width = widths.pop()
    if any(len(m.area) < width for m in modules):
        raise ValueError(
            "las áreas son municipios y hay módulos con clave de entidad (2 dígitos): "
            "todas de municipio (5 dígitos), o planee por entidad"
        )
    areas = tuple(sorted(set(population) | {m.area[:width] for m in modules}))
    pop = np.array([population.get(k, 0) for k in areas], dtype=np.float64)
    if (pop < 0).any():
        raise ValueError("población negativa")

    capacity = _capacity(modules, phases, areas, start, horizon)
    arrivals, late_share, uncalled_share = _arrivals(calendar, capacity > 0, pop, start, horizon, a)
    # Lindley's recursion for every area at once: with X the cumulative (arrivals - capacity),
    # Q[d] = X[d] - min(0, min over j ≤ d of X[j]).
    x = np.cumsum(arrivals - capacity, axis=1)
    queue = np.maximum(x - np.minimum(np.minimum.accumulate(x, axis=1), 0.0), 0.0)
    before = np.concatenate([np.zeros((len(areas), 1)), queue[:, :-1]], axis=1)
    served = np.clip(before + arrivals - queue, 0.0, capacity)

    results = tuple(
        _result(k, (names or {}).get(k, k), pop[i], capacity[i], arrivals[i], served[i],
                queue[i], pop[i] * late_share[i], pop[i] * uncalled_share[i], start, a)
        for i, k in enumerate(areas)
    )  # fmt: skip
    return Projection(
        calendar.name, start, horizon, areas, results, capacity, arrivals, served, queue
    )


def by_state(
    projection: Projection,
    names: Mapping[str, str] | None = None,
    assumptions: Assumptions | None = None,
) -> Projection:
    """A projection by municipality summed into its states (one by state is returned as it
    is): a state's capacity, arrivals, service and queue each day are its municipalities'
    sums, and it finishes when its last municipality finishes (never, if one never does)."""
    if all(len(k) == 2 for k in projection.areas):
        return projection
    a = assumptions or Assumptions()
    states = tuple(sorted({k[:2] for k in projection.areas}))
    index = {k: i for i, k in enumerate(states)}
    rows = np.array([index[k[:2]] for k in projection.areas], dtype=np.intp)
    firsts = np.flatnonzero(np.diff(rows, prepend=-1))  # areas are sorted: states in runs

    def total(series: Floats) -> Floats:
        summed: Floats = np.add.reduceat(series, firsts, axis=0)
        return summed

    capacity, arrivals, served, queue = (
        total(x)
        for x in (projection.capacity, projection.arrivals, projection.served, projection.queue)
    )
    members: list[list[AreaResult]] = [[] for _ in states]
    for row, r in zip(rows, projection.results, strict=True):
        members[row].append(r)
    results = []
    for i, key in enumerate(states):
        parts = members[i]
        finished = all(r.finished for r in parts)
        end = max(r.days_to_finish or 0 for r in parts) if finished else projection.horizon
        results.append(
            _result(key, (names or {}).get(key, key), float(sum(r.population for r in parts)),
                    capacity[i], arrivals[i], served[i], queue[i],
                    sum(r.late for r in parts), sum(r.not_called for r in parts),
                    projection.start, a, (finished, end))
        )  # fmt: skip
    return Projection(
        projection.calendar, projection.start, projection.horizon, states, tuple(results),
        capacity, arrivals, served, queue,
    )  # fmt: skip


def _capacity(
    modules: Sequence[PlannedModule],
    phases: Sequence[Phase],
    areas: tuple[str, ...],
    start: date,
    horizon: int,
) -> Floats:
    """People the area's modules can serve each day: each module on the ISO weekdays it works
    and the days a phase opens it (as booking's `Phase.opens` does): a phase opens a module
    when it opens its state or, for a module keyed by municipality, that municipality. So in
    a state's area the modules of a regional pilot's municipalities open before the rest; a
    module keyed by state alone opens with its state only."""
    width = len(areas[0])
    index = {k: i for i, k in enumerate(areas)}
    places = sorted({m.area for m in modules})  # the modules' own keys
    where = {k: i for i, k in enumerate(places)}
    by_weekday = np.zeros((len(places), 7))
    for m in modules:
        for wd in set(m.weekdays):
            by_weekday[where[m.area], int(wd) - 1] += m.capacity
    iso = (start.toordinal() + np.arange(horizon) - 1) % 7  # ordinal 1 is a Monday
    keys = np.array(places, dtype=str)
    states = np.array([k[:2] for k in places], dtype=str)
    open_place = np.zeros((len(places), horizon), dtype=bool)
    for phase in phases:
        lo = max(0, (phase.starts_on - start).days)
        hi = horizon if phase.ends_on is None else min(horizon, (phase.ends_on - start).days + 1)
        if lo < hi:
            rows = np.isin(states, phase.states) | np.isin(keys, phase.municipalities)
            open_place[rows, lo:hi] = True
    capacity: Floats = np.zeros((len(areas), horizon))
    if places:  # `places` is sorted, so the modules of one area are in one run of rows
        pooled = np.array([index[k[:width]] for k in places], dtype=np.intp)
        firsts = np.flatnonzero(np.diff(pooled, prepend=-1))
        capacity[pooled[firsts]] = np.add.reduceat(by_weekday[:, iso] * open_place, firsts)
    return capacity


def _eligibility(calendar: Calendar, start: date, horizon: int, ages: int) -> Labels:
    """rule[day, letter, age]: the first rule (in the calendar's order) that lets that letter
    and age come that day, or -1."""
    rule = np.full((horizon, len(LETTERS), ages), -1, dtype=np.int16)
    for r in reversed(range(len(calendar.rules))):
        item = calendar.rules[r]
        lo = max(0, (item.starts_on - start).days)
        hi = min(horizon, (item.ends_on - start).days + 1)
        if lo < hi:
            letters = np.array([c in item.letter_set for c in LETTERS])
            rule[lo:hi, letters, item.min_age : item.max_age + 1] = r
    return rule


def _birthdays_passed(start: date, horizon: int, buckets: int) -> npt.NDArray[np.int64]:
    """passed[bucket, day]: birthdays a bucket's people have had since `start`."""
    days = start.toordinal() + np.arange(horizon)
    passed = np.zeros((buckets, horizon), dtype=np.int64)
    for b in range(buckets):
        first = bucket_birthday(start, b, buckets)
        ordinals = [
            first.replace(year=first.year + years).toordinal()  # never 29 February
            for years in range(horizon // 365 + 2)
        ]
        passed[b] = np.searchsorted(np.array(ordinals), days, side="right")
    return passed


def _classes(rows: npt.NDArray[Any]) -> tuple[npt.NDArray[np.intp], int]:
    """Number equal rows alike, in order of first appearance (rows compared as bytes:
    `np.unique(axis=0)` is slow on rows this wide)."""
    flat = np.ascontiguousarray(rows.reshape(rows.shape[0], -1))
    seen: dict[bytes, int] = {}
    labels = [seen.setdefault(row.tobytes(), len(seen)) for row in flat]
    return np.array(labels, dtype=np.intp), len(seen)


def _representatives(labels: npt.NDArray[np.intp], count: int) -> npt.NDArray[np.intp]:
    """The first row of each class."""
    first = np.full(count, len(labels), dtype=np.intp)
    np.minimum.at(first, labels, np.arange(len(labels)))
    return first


def _cohorts(
    calendar: Calendar, start: date, horizon: int, a: Assumptions
) -> tuple[Labels, Floats]:
    """Every distinct pattern of days (rows: the rule that allows the cohort each day, or -1)
    and the population share that has it.

    Letters with the same columns in the eligibility table behave alike, and so do ages on
    `start` whose ages over the horizon fall in columns that behave alike: one representative
    of each class is enough, which keeps the work small for any calendar."""
    passed = _birthdays_passed(start, horizon, a.birthday_buckets)
    reach = int(passed.max()) + 1
    # Ages up to MAX_AGE on `start`, and older by the end of the horizon (no rule covers those).
    rule_of = _eligibility(calendar, start, horizon, AGES + reach)
    letters = np.flatnonzero(a.letter_shares > 0)
    ages = np.flatnonzero(a.age_shares > 0)
    letter_class, n_letter = _classes(rule_of[:, letters, :].transpose(1, 0, 2))
    column_class, _ = _classes(rule_of.transpose(2, 0, 1))
    trajectory = column_class[ages[:, None] + np.arange(reach)]
    age_class, n_age = _classes(trajectory)
    letter_rep = letters[_representatives(letter_class, n_letter)]
    age_rep = ages[_representatives(age_class, n_age)]
    letter_weight = np.bincount(letter_class, a.letter_shares[letters], n_letter)
    age_weight = np.bincount(age_class, a.age_shares[ages], n_age)

    day = np.arange(horizon)
    age_on_day = age_rep[:, None, None] + passed[None, :, :]
    pattern = rule_of[day[None, None, None, :], letter_rep[:, None, None, None], age_on_day[None]]
    weight = letter_weight[:, None, None] * age_weight[None, :, None]
    weight = np.broadcast_to(weight / a.birthday_buckets, pattern.shape[:3])
    rows: Labels = pattern.reshape(-1, horizon)
    kind, kinds = _classes(rows)
    shares = np.bincount(kind, weight.reshape(-1), kinds).astype(np.float64)
    return rows[_representatives(kind, kinds)], shares


def _arrivals(
    calendar: Calendar, working: Bools, pop: Floats, start: date, horizon: int, a: Assumptions
) -> tuple[Floats, Floats, Floats]:
    """People who come to each area each day; shares of late comers and of people not called."""
    rules, weights = _cohorts(calendar, start, horizon, a)
    patterns = rules >= 0
    cohorts = np.arange(len(patterns))
    called = patterns.any(axis=1)
    first_allowed = np.argmax(patterns, axis=1)
    # Windows: runs of consecutive days allowed by the same rule, numbered 1, 2, … per cohort
    # (0 = not allowed), so that a rule right after another one opens a window of its own.
    previous = np.pad(rules, ((0, 0), (1, 0)), constant_values=-1)[:, :-1]
    run = np.cumsum(patterns & (rules != previous), axis=1) * patterns
    group, groups = _classes(working)
    masks = working[_representatives(group, groups)]
    day = np.arange(horizon)[None, :]
    profiles = np.zeros((len(masks), horizon))
    late = np.zeros(len(masks))
    for g, mask in enumerate(masks):
        usable = patterns & mask
        fits = usable.any(axis=1)
        first = np.argmax(usable, axis=1)
        chosen_run = np.where(fits, run[cohorts, first], -1)
        within = (day >= first[:, None]) & (day < first[:, None] + a.spread_days)
        chosen = (run == chosen_run[:, None]) & mask & within
        count = chosen.sum(axis=1)
        per_day = np.divide(weights, count, out=np.zeros_like(weights), where=count > 0)
        profiles[g] = per_day @ chosen
        # No allowed day on which the area works: they come on its next working day.
        day_or_end = np.append(np.where(mask, np.arange(horizon), horizon), horizon)
        next_open = np.minimum.accumulate(day_or_end[::-1])[::-1]
        comes = next_open[first_allowed]
        behind = called & ~fits & (comes < horizon)
        np.add.at(profiles[g], comes[behind], weights[behind])
        late[g] = weights[behind].sum() + weights[fits & (chosen_run > 1)].sum()
    uncalled = float(weights[~called].sum())
    return pop[:, None] * profiles[group], late[group], np.full(len(pop), uncalled)


def _result(
    area: str,
    name: str,
    pop: float,
    capacity: Floats,
    arrivals: Floats,
    served: Floats,
    queue: Floats,
    late: float,
    not_called: float,
    start: date,
    a: Assumptions,
    finish: tuple[bool, int] | None = None,
) -> AreaResult:
    """One area's figures; `finish` (finished, days to finish or the horizon) when it is
    given rather than read from the area's own series (a state summed from municipalities)."""
    horizon = len(capacity)
    if finish is None:
        remaining = pop - np.cumsum(served)
        done = np.flatnonzero(remaining <= a.finish_tolerance)
        finished = pop <= a.finish_tolerance or len(done) > 0
        end = (int(done[0]) + 1 if len(done) else horizon) if pop > a.finish_tolerance else 0
    else:
        finished, end = finish
    working = np.flatnonzero(capacity > 0)
    mean_capacity = float(capacity[working].mean()) if len(working) else 0.0
    peak = int(np.argmax(queue))
    peak_queue = float(queue[peak])
    alert = a.queue_alert_days * mean_capacity
    long_queue = queue > max(alert, a.finish_tolerance)
    late, not_called = float(late), float(not_called)
    flags = {
        Flag.QUEUE: bool(long_queue.any()),
        Flag.UNFINISHED: not finished,
        Flag.NO_CAPACITY: pop > a.finish_tolerance and not len(working),
        Flag.LATE: late >= a.finish_tolerance,
        Flag.NOT_CALLED: not_called >= a.finish_tolerance,
    }
    used = float(capacity[:end].sum())
    return AreaResult(
        area=area,
        name=name,
        population=round(pop),
        served=float(served.sum()),
        waiting=float(queue[-1]),
        not_arrived=max(0.0, pop - float(arrivals.sum())),
        finished=finished,
        days_to_finish=end if finished else None,
        finish_day=start + timedelta(days=end - 1) if finished and end else None,
        opens_on=start + timedelta(days=int(working[0])) if len(working) else None,
        daily_capacity=mean_capacity,
        peak_queue=peak_queue,
        peak_day=start + timedelta(days=peak) if peak_queue > a.finish_tolerance else None,
        peak_queue_days=peak_queue / mean_capacity if mean_capacity else float("inf"),
        utilisation=float(served[:end].sum()) / used if used else 0.0,
        late=late,
        not_called=not_called,
        episodes=_episodes(long_queue, queue, start),
        flags=frozenset(f for f, on in flags.items() if on),
    )


def _episodes(long_queue: Bools, queue: Floats, start: date) -> tuple[QueueEpisode, ...]:
    edges = np.diff(np.concatenate([[0], long_queue.astype(np.int8), [0]]))
    firsts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return tuple(
        QueueEpisode(
            start + timedelta(days=int(f)),
            start + timedelta(days=int(e) - 1),
            float(queue[f:e].max()),
        )
        for f, e in zip(firsts, ends, strict=True)
    )


@dataclass(frozen=True, slots=True)
class QueuePeriod:
    """Days on which some area's queue exceeds the alert, with the areas and the worst one."""

    first_day: date
    last_day: date
    areas: tuple[str, ...]
    worst_area: str
    worst_queue_days: float


def queue_periods(projection: Projection) -> list[QueuePeriod]:
    """Overlapping queue episodes of all areas, merged into national periods."""
    found = sorted(
        ((e, r) for r in projection.results for e in r.episodes),
        key=lambda item: (item[0].first_day, item[1].area),
    )
    periods: list[QueuePeriod] = []
    for episode, r in found:
        days = episode.peak_queue / r.daily_capacity
        last = periods[-1] if periods else None
        if last is None or episode.first_day > last.last_day:
            periods.append(
                QueuePeriod(episode.first_day, episode.last_day, (r.area,), r.area, days)
            )
            continue
        worse = days > last.worst_queue_days
        periods[-1] = QueuePeriod(
            last.first_day,
            max(last.last_day, episode.last_day),
            last.areas if r.area in last.areas else (*last.areas, r.area),
            r.area if worse else last.worst_area,
            days if worse else last.worst_queue_days,
        )
    return periods


@dataclass(frozen=True, slots=True)
class ComparedArea:
    area: str
    name: str
    first: AreaResult
    second: AreaResult

    @property
    def days_difference(self) -> int | None:
        """Second calendar's days to finish minus the first's (None if either never ends)."""
        a, b = self.first.days_to_finish, self.second.days_to_finish
        return None if a is None or b is None else b - a

    @property
    def peak_queue_difference(self) -> float:
        return self.second.peak_queue - self.first.peak_queue


def compare(first: Projection, second: Projection) -> list[ComparedArea]:
    """Two projections of the same areas, side by side, area by area."""
    if first.areas != second.areas:
        raise ValueError("las dos proyecciones deben cubrir las mismas áreas")
    return [
        ComparedArea(a.area, a.name, a, b)
        for a, b in zip(first.results, second.results, strict=True)
    ]
