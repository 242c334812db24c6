"""Age in completed years, and who is a minor (Código Civil Federal art. 646: majority at 18)."""

from __future__ import annotations

from datetime import date

ADULT_AGE = 18


def age_on(birth: date, day: date) -> int:
    """Completed years on `day` (someone born on 29 February turns a year older on 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def is_minor(birth: date, day: date) -> bool:
    return age_on(birth, day) < ADULT_AGE
