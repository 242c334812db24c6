"""What the planner takes: modules, population, the assumptions the population files cannot
give (age and initial shares: see `planner`'s docstring and docs/planner.md), calendar files,
and the stand-ins used before the real modules and calendar exist (a synthetic national module
list, two example calendars, an example rollout by phases). Files are read from the paths
given; nothing is copied into the project.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from salud.enrollment.calendar import LETTERS, MAX_AGE, Calendar, Phase, Rule
from salud.enrollment.population import population

AreaKey = Annotated[str, StringConstraints(pattern=r"^(0[1-9]|[12][0-9]|3[0-2])([0-9]{3})?$")]
Floats = npt.NDArray[np.float64]

# INEGI, Censo de Población y Vivienda 2020: % of the population in each five-year age group,
# 0-4, 5-9, …, 80-84, 85 and over (approximate, as in identity/synth.py).
CENSUS_2020_AGE_GROUPS: tuple[float, ...] = (
    *(8.3, 8.7, 8.8, 8.6, 8.3, 7.9, 7.5, 7.1, 6.8),
    *(6.3, 5.6, 4.6, 3.8, 2.9, 2.1, 1.4, 0.9, 0.8),
)
_OLDEST = 104  # the 85+ group is spread over 85..104
# Surnames per CURP initial in the synthetic generator's list of 623 (Faker es_MX), after
# RENAPO's rules (particles such as "de la" skipped, accents dropped, Ñ written X).
SYNTH_SURNAME_INITIALS: Mapping[str, int] = {
    **{"A": 57, "B": 38, "C": 74, "D": 8, "E": 16, "F": 14, "G": 41, "H": 12, "I": 3},
    **{"J": 10, "K": 0, "L": 29, "M": 63, "N": 15, "O": 25, "P": 38, "Q": 8, "R": 46},
    **{"S": 42, "T": 21, "U": 7, "V": 42, "W": 0, "X": 0, "Y": 2, "Z": 12},
}
AGES = MAX_AGE + 1


class PlannedModule(BaseModel):
    """A registration module as the planner sees it (real or synthetic)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    area: AreaKey = Field(description="clave INEGI de la entidad (01-32) o del municipio")
    capacity: int = Field(ge=0, le=100_000, description="personas por día")
    weekdays: str = Field(default="123456", pattern=r"^[1-7]{1,7}$", description="días ISO")
    name: str | None = Field(default=None, max_length=120)


def age_shares_from_groups(groups: Sequence[float], *, oldest: int = _OLDEST) -> Floats:
    """Single-year shares (index = age) from five-year group shares, the last open-ended."""
    if len(groups) < 2 or any(g < 0 for g in groups) or sum(groups) <= 0:
        raise ValueError("grupos de edad: se esperan porcentajes no negativos por quinquenio")
    top = (len(groups) - 1) * 5
    if not top <= oldest <= MAX_AGE:
        raise ValueError(f"edad máxima {oldest}: debe estar entre {top} y {MAX_AGE}")
    shares = np.zeros(AGES)
    for i, g in enumerate(groups[:-1]):
        shares[i * 5 : i * 5 + 5] = g / 5
    tail = np.exp(-np.arange(oldest - top + 1) / 6.0)
    shares[top : oldest + 1] = groups[-1] * tail / tail.sum()
    normalised: Floats = shares / shares.sum()
    return normalised


def letter_shares_from_counts(counts: Mapping[str, float]) -> Floats:
    unknown = set(counts) - set(LETTERS)
    if unknown:
        raise ValueError(f"iniciales desconocidas: {', '.join(sorted(unknown))} (use A-Z)")
    shares = np.array([float(counts.get(letter, 0)) for letter in LETTERS])
    if (shares < 0).any() or shares.sum() <= 0:
        raise ValueError("iniciales: se esperan cantidades no negativas, no todas cero")
    normalised: Floats = shares / shares.sum()
    return normalised


@dataclass(frozen=True, eq=False)
class Assumptions:
    """What the population files do not say. Shares are normalised to sum 1."""

    age_shares: Floats = field(
        default_factory=lambda: age_shares_from_groups(CENSUS_2020_AGE_GROUPS)
    )
    letter_shares: Floats = field(
        default_factory=lambda: letter_shares_from_counts(SYNTH_SURNAME_INITIALS)
    )
    birthday_buckets: int = 52
    spread_days: int = 42
    finish_tolerance: float = 0.5
    queue_alert_days: float = 5.0

    def __post_init__(self) -> None:
        ages = np.asarray(self.age_shares, dtype=np.float64)
        letters = np.asarray(self.letter_shares, dtype=np.float64)
        if ages.shape != (AGES,) or (ages < 0).any() or ages.sum() <= 0:
            raise ValueError(f"age_shares: {AGES} valores no negativos (edad 0 a {MAX_AGE})")
        if letters.shape != (len(LETTERS),) or (letters < 0).any() or letters.sum() <= 0:
            raise ValueError("letter_shares: 26 valores no negativos (A-Z)")
        if not 1 <= self.birthday_buckets <= 366:
            raise ValueError("birthday_buckets: entre 1 y 366")
        if self.spread_days < 1:
            raise ValueError("spread_days: al menos 1")
        if self.finish_tolerance <= 0 or self.queue_alert_days <= 0:
            raise ValueError("finish_tolerance y queue_alert_days deben ser positivos")
        object.__setattr__(self, "age_shares", ages / ages.sum())
        object.__setattr__(self, "letter_shares", letters / letters.sum())


ALL_STATES = [f"{i:02d}" for i in range(1, 33)]
# Issue 6: about 2,900 modules, one enrollment per 4 minutes over an 8-hour day.
NATIONAL_MODULES = 2900
MODULE_CAPACITY = 120
MODULE_WEEKDAYS = "123456"


@dataclass(frozen=True, slots=True)
class PopulationTable:
    counts: dict[str, int]  # area key (state "01" or municipality "01001") -> people
    names: dict[str, str]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_population(inegi_dir: Path, *, by_municipality: bool = False) -> PopulationTable:
    """Population of the 2020 census per state (or per municipality), from the shared reader
    of `municipios_inegi.csv` (enrollment/population.py)."""
    states = population(inegi_dir).values()
    if not by_municipality:
        return PopulationTable({s.key: s.population for s in states},
                               {s.key: s.name for s in states})  # fmt: skip
    counts, names = {}, {}
    for s in states:
        for m in s.municipalities:
            counts[s.key + m.key] = m.population
            names[s.key + m.key] = f"{m.name}, {s.abbreviation}"
    return PopulationTable(counts, names)


def synthetic_modules(
    population: Mapping[str, int],
    total: int = NATIONAL_MODULES,
    capacity: int = MODULE_CAPACITY,
    weekdays: str = MODULE_WEEKDAYS,
) -> list[PlannedModule]:
    """`total` modules shared among areas in proportion to population (largest remainders),
    at least one per populated area: a stand-in until the real modules are registered."""
    populated = {k: v for k, v in sorted(population.items()) if v > 0}
    if total < len(populated):
        raise ValueError(f"{total} módulos no alcanzan para {len(populated)} áreas con población")
    people = sum(populated.values())
    quota = {k: total * v / people for k, v in populated.items()}
    counts = {k: max(1, int(q)) for k, q in quota.items()}
    by_remainder = sorted(populated, key=lambda k: (counts[k] - quota[k], k))
    for k in by_remainder[: max(0, total - sum(counts.values()))]:
        counts[k] += 1
    while sum(counts.values()) > total:  # the minimum of one pushed us over
        k = max((k for k in counts if counts[k] > 1), key=lambda k: counts[k] - quota[k])
        counts[k] -= 1
    return [
        PlannedModule(area=k, capacity=capacity, weekdays=weekdays, name=f"M-{k}-{i + 1:03d}")
        for k, n in counts.items()
        for i in range(n)
    ]


def read_modules_csv(path: Path) -> list[PlannedModule]:
    """Columns `clave` (INEGI state or municipality key), `capacidad` (people a day), `dias`
    (ISO weekdays, "123456" = Monday to Saturday) and an optional `nombre`."""
    modules: list[PlannedModule] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"clave", "capacidad", "dias"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path.name}: faltan las columnas {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            short = sorted(k for k in ("clave", "capacidad", "dias") if row.get(k) is None)
            if short:  # a line with fewer cells than the header
                raise ValueError(f"{path.name}, línea {line}: falta {', '.join(short)}")
            try:
                key = row["clave"].strip()
                modules.append(
                    PlannedModule(
                        area=key.zfill(2) if len(key) == 1 else key,
                        capacity=int(row["capacidad"]),
                        weekdays=row["dias"].strip(),
                        name=(row.get("nombre") or "").strip() or None,
                    )
                )
            except (ValueError, ValidationError) as exc:
                raise ValueError(f"{path.name}, línea {line}: {_reason(exc)}") from None
    if not modules:
        raise ValueError(f"{path.name}: no tiene módulos")
    return modules


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


def national_phase(start: date) -> list[Phase]:
    return [Phase(name="Nacional", starts_on=start, states=ALL_STATES)]


class CalendarPlan(BaseModel):
    """A calendar file: the calendar, and optionally the phases that open states."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calendar: Calendar
    phases: list[Phase] | None = Field(default=None, max_length=100)


def load_calendar_plan(path: Path) -> tuple[Calendar, list[Phase] | None]:
    """A JSON file with a `Calendar`, or `{"calendar": …, "phases": […]}`; phases are None
    when the file has none (`national_phase` opens every state)."""
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: no es JSON válido ({exc})") from None
    try:
        if isinstance(data, dict) and "calendar" in data:
            plan = CalendarPlan.model_validate(data)
        else:
            plan = CalendarPlan(calendar=Calendar.model_validate(data))
    except ValidationError as exc:
        raise ValueError(f"{path.name}: {_reason(exc)}") from None
    return plan.calendar, plan.phases


# Example calendars. The letter groups have a comparable share of first-surname initials
# (in the planner's default assumption); each has five weeks, which at the synthetic national
# capacity (2,900 × 120 a day, Monday to Saturday) serves about 8.3 % of the population, so
# the larger groups (A, C, M, S-T) are expected to leave queues that the smaller ones drain.
LETTER_GROUPS = ("A", "B", "C", "D-F", "G", "H-L", "M", "N-O", "P-Q", "R", "S-T", "U-V", "W-Z")
GROUP_WEEKS = 5
SENIOR_WEEKS = 6
SENIOR_AGE = 60
CALENDAR_DAYS = 730


def _by_letter_rules(first: date, min_age: int, max_age: int) -> list[Rule]:
    rules = []
    for i, letters in enumerate(LETTER_GROUPS):
        starts = first + timedelta(weeks=GROUP_WEEKS * i)
        rules.append(
            Rule(starts_on=starts, ends_on=starts + timedelta(weeks=GROUP_WEEKS, days=-1),
                 letters=letters, min_age=min_age, max_age=max_age, label=f"Letras {letters}")
        )  # fmt: skip
    return rules


def _latecomers(after: date, start: date) -> Rule:
    return Rule(
        starts_on=after,
        ends_on=start + timedelta(days=CALENDAR_DAYS - 1),
        label="Rezagados: todas las letras y edades",
    )


def by_letter_calendar(start: date) -> Calendar:
    """Everyone by first-surname initial, five weeks per group, then an open period."""
    rules = _by_letter_rules(start, 0, 130)
    return Calendar(
        name="Por letra", rules=[*rules, _latecomers(rules[-1].ends_on + timedelta(1), start)]
    )


def older_adults_first_calendar(start: date) -> Calendar:
    """Six weeks for people aged 60 or more (any initial), then the rest by initial."""
    seniors = Rule(
        starts_on=start,
        ends_on=start + timedelta(weeks=SENIOR_WEEKS, days=-1),
        min_age=SENIOR_AGE,
        label=f"Personas de {SENIOR_AGE} años o más",
    )
    rules = _by_letter_rules(start + timedelta(weeks=SENIOR_WEEKS), 0, SENIOR_AGE - 1)
    return Calendar(
        name="Personas mayores primero",
        rules=[seniors, *rules, _latecomers(rules[-1].ends_on + timedelta(1), start)],
    )


EXAMPLE_CALENDARS: dict[str, Callable[[date], Calendar]] = {
    "por-letra": by_letter_calendar,
    "mayores-primero": older_adults_first_calendar,
}


PILOT_STATES = 8
PHASE_WEEKS = 8


def pilot_phases(start: date, population: Mapping[str, int]) -> list[Phase]:
    """An example rollout: the eight least populated states first, the next twelve eight weeks
    later, the rest (the largest) after sixteen weeks. Keys of `population` may be states or
    municipalities."""
    by_state: dict[str, int] = {}
    for key, people in population.items():
        by_state[key[:2]] = by_state.get(key[:2], 0) + people
    order = sorted(by_state, key=lambda k: (by_state[k], k))
    cuts = [
        order[:PILOT_STATES],
        order[PILOT_STATES : PILOT_STATES + 12],
        order[PILOT_STATES + 12 :],
    ]
    return [
        Phase(name=f"Fase {i + 1}", starts_on=start + timedelta(weeks=PHASE_WEEKS * i),
              states=sorted(states))
        for i, states in enumerate(cuts)
        if states
    ]  # fmt: skip
