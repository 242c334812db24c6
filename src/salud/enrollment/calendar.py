"""The enrollment calendar and its phases. Pure logic, no database.

A *calendar* is a list of rules: on the days from `starts_on` to `ends_on`, people whose first
surname begins with one of `letters` and whose age (on that day) lies in `[min_age, max_age]`
may come. The letter is the first character of the CURP, which RENAPO takes from the first
surname (an initial Ñ is written X in the CURP, so Ñ surnames follow X), so a person can be
told their days from the CURP alone, before they are in the registry.

A *phase* opens states (or, within a state, single municipalities: regions) progressively: a
module takes appointments on a day only when a phase in force that day opens its state or its
municipality."""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import lru_cache
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from salud.kit.ages import age_on

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SPEC = re.compile(r"^[A-Z](-[A-Z])?(,[A-Z](-[A-Z])?)*$")
MAX_AGE = 130
StateKey = Annotated[str, StringConstraints(pattern=r"^(0[1-9]|[12][0-9]|3[0-2])$")]
# A municipality as INEGI's five-digit key: state (2) + municipality (3), e.g. "13048".
MunicipalityKey = Annotated[str, StringConstraints(pattern=r"^(0[1-9]|[12][0-9]|3[0-2])[0-9]{3}$")]


@lru_cache(maxsize=4096)  # a calendar asks for the same few specs on every day it checks
def letter_set(spec: str) -> frozenset[str]:
    """`"A-C,M,X-Z"` → {A, B, C, M, X, Y, Z}. ValueError names what is wrong."""
    if not _SPEC.match(spec):
        raise ValueError("use letras A-Z y rangos separados por comas, p. ej. «A-F,Ñ» → «A-F,X»")
    out: set[str] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        last = last or first
        if last < first:
            raise ValueError(f"el rango {part} está al revés")
        out.update(LETTERS[LETTERS.index(first) : LETTERS.index(last) + 1])
    return frozenset(out)


def surname_letter(curp: str) -> str:
    return curp[0].upper()


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    starts_on: date
    ends_on: date
    letters: str = Field(default="A-Z", max_length=80, description="p. ej. «A-F» o «A-C,M»")
    min_age: int = Field(default=0, ge=0, le=MAX_AGE)
    max_age: int = Field(default=MAX_AGE, ge=0, le=MAX_AGE)
    label: str | None = Field(default=None, max_length=120)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on: termina antes de empezar")
        if self.max_age < self.min_age:
            raise ValueError("max_age: es menor que min_age")
        letter_set(self.letters)  # raises with the reason
        return self

    @property
    def letter_set(self) -> frozenset[str]:
        return letter_set(self.letters)

    def covers(self, letter: str, age: int, day: date) -> bool:
        return (
            self.starts_on <= day <= self.ends_on
            and self.min_age <= age <= self.max_age
            and letter in self.letter_set
        )


class Calendar(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    rules: list[Rule] = Field(min_length=1, max_length=2000)

    def allows(self, letter: str, birth: date, day: date) -> bool:
        age = age_on(birth, day)
        return any(r.covers(letter, age, day) for r in self.rules)

    def days_for(self, letter: str, birth: date, start: date, end: date) -> list[date]:
        """Every day in [start, end] this person may come."""
        out: list[date] = []
        day = start
        while day <= end:
            if self.allows(letter, birth, day):
                out.append(day)
            day += timedelta(days=1)
        return out

    def span(self) -> tuple[date, date]:
        return min(r.starts_on for r in self.rules), max(r.ends_on for r in self.rules)


class Phase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    starts_on: date
    ends_on: date | None = None
    states: list[StateKey] = Field(default_factory=list, max_length=32, description="claves INEGI")
    municipalities: list[MunicipalityKey] = Field(
        default_factory=list, max_length=2500, description="claves INEGI de 5 dígitos (regiones)"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.ends_on is not None and self.ends_on < self.starts_on:
            raise ValueError("ends_on: termina antes de empezar")
        if not self.states and not self.municipalities:
            raise ValueError("states: indique estados o municipios que la fase abre")
        return self

    def opens(self, state: str, day: date, municipality: str | None = None) -> bool:
        in_force = self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)
        if not in_force:
            return False
        return state in self.states or (
            municipality is not None and f"{state}{municipality}" in self.municipalities
        )


def state_open(phases: list[Phase], state: str, day: date, municipality: str | None = None) -> bool:
    """Whether a phase in force on `day` opens the state, or this municipality of it."""
    return any(p.opens(state, day, municipality) for p in phases)


def weekday_open(weekdays: str, day: date) -> bool:
    """`weekdays` lists ISO weekdays the module works ("12345" = Monday to Friday)."""
    return str(day.isoweekday()) in weekdays
