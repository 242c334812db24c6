"""Business days in Mexico: legal terms run on working days (días hábiles), Monday to Friday
except the mandatory rest days of Ley Federal del Trabajo art. 74."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache


def _nth_monday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(7 - first.weekday()) % 7 + 7 * (n - 1))


@lru_cache(maxsize=64)
def holidays(year: int) -> frozenset[date]:
    days = {
        date(year, 1, 1),
        _nth_monday(year, 2, 1),  # Constitución
        _nth_monday(year, 3, 3),  # Natalicio de Benito Juárez
        date(year, 5, 1),
        date(year, 9, 16),
        _nth_monday(year, 11, 3),  # Revolución
        date(year, 12, 25),
    }
    if (year - 2024) % 6 == 0:  # transmisión del Poder Ejecutivo Federal
        days.add(date(year, 10, 1))
    return frozenset(days)


def is_workday(day: date) -> bool:
    return day.weekday() < 5 and day not in holidays(day.year)


def add_workdays(start: date, count: int) -> date:
    """The day `count` working days after `start` (the filing day itself does not count)."""
    day = start
    left = count
    while left > 0:
        day += timedelta(days=1)
        if is_workday(day):
            left -= 1
    return day


def received_on(filed: date) -> date:
    """The day a filing counts as received: that day if it is a working day, else the next
    one (a request filed on a Saturday or a rest day is received the next working day, and
    its term runs from the day after that)."""
    day = filed
    while not is_workday(day):
        day += timedelta(days=1)
    return day
