"""Opening hours of a unit, and whether it is open at a given moment.

The CLUES catalog gives, per unit, the days open (Monday..Sunday, SI/NO) and one opening and
one closing time; the January 2025 sheet gives the times without the days. Stored form:
``{"days": [Mon..Sun] | None, "open": "HH:MM", "close": "HH:MM", "blocks": n | None}``.
A close of "24:00", "23:59" or "00:00" means midnight; a close earlier than the open means
the unit closes after midnight (a night shift started the day before). Units with several
blocks a day (``blocks`` > 1) are described by the first opening and the last closing, so
"open" may include a midday break: an approximation the catalog forces on us.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from salud.kit.clock import MEXICO_CITY
from salud.kit.workdays import holidays

DAY_MINUTES = 24 * 60
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")

# State (CLUES letters) -> IANA zone, by the Ley de los Husos Horarios (2022): most of Mexico
# keeps America/Mexico_City (no daylight time since 2022); these states keep another.
STATE_ZONES: dict[str, str] = {
    "BC": "America/Tijuana",
    "BS": "America/Mazatlan",
    "SL": "America/Mazatlan",
    "NT": "America/Mazatlan",
    "SR": "America/Hermosillo",
    "QR": "America/Cancun",
    "CH": "America/Chihuahua",
}
# Municipalities (INEGI key) that the law places otherwise than their state: the northern
# border follows the United States' daylight time (Chihuahua's Juárez and its neighbours on
# Mountain time, Ojinaga's on Central; Coahuila's, Nuevo León's and Tamaulipas's border on
# Central), and Bahía de Banderas, Nayarit, keeps central time.
MUNICIPALITY_ZONES: dict[str, str] = {
    **dict.fromkeys(("08005", "08028", "08035", "08037", "08053"), "America/Ciudad_Juarez"),
    **dict.fromkeys(("08015", "08042", "08052"), "America/Ojinaga"),
    **dict.fromkeys(
        (
            *("05002", "05003", "05012", "05013", "05014", "05019", "05022", "05023", "05025"),
            *("05037", "05038", "19005"),
            *("28007", "28014", "28015", "28022", "28024", "28025", "28027", "28032", "28033"),
            "28040",
        ),
        "America/Matamoros",
    ),
    "18020": "America/Bahia_Banderas",
}
_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str) -> ZoneInfo:
    zone = _ZONES.get(name)
    if zone is None:
        zone = _ZONES[name] = ZoneInfo(name)
    return zone


def zone_for_state(state_code: str) -> ZoneInfo:
    name = STATE_ZONES.get(state_code)
    return MEXICO_CITY if name is None else _zone(name)


def zone_for_unit(state_code: str, state_key: str | None, municipality_key: str | None) -> ZoneInfo:
    """The unit's civil time zone: its municipality's where the law names it, else its
    state's (a unit whose municipality is unknown takes its state's)."""
    if state_key and municipality_key:
        name = MUNICIPALITY_ZONES.get(state_key + municipality_key)
        if name is not None:
            return _zone(name)
    return zone_for_state(state_code)


def parse_time(text: str) -> str:
    """Validate "H:MM"/"HH:MM" (24 h) and return it as "HH:MM"; ValueError otherwise."""
    value = text.strip()
    if len(value) == 4 and value[1] == ":":
        value = "0" + value
    match = _TIME.match(value)
    if match is None or (match.group(1) == "24" and match.group(2) != "00"):
        raise ValueError(f"hora inválida: {text!r} (se espera HH:MM)")
    return value


def minutes(text: str) -> int:
    hh, mm = text.split(":")
    return int(hh) * 60 + int(mm)


def window(open_time: str, close_time: str) -> tuple[int, int]:
    """(open, close) in minutes of the day; close may be < open (closes after midnight)."""
    start = minutes(open_time)
    end = minutes(close_time)
    if end == 0 or end >= DAY_MINUTES - 1:  # 00:00, 23:59, 24:00: until midnight
        end = DAY_MINUTES
    if end == start:  # "08:00 a 08:00": round the clock
        start, end = 0, DAY_MINUTES
    return start, end


def is_open(
    hours: Mapping[str, Any] | None, at: datetime, zone: ZoneInfo | None = None
) -> bool | None:
    """Open at `at`? True/False, or None when the catalog does not say enough to know.

    `at` must be aware; it is read in `zone` (the unit's local time) when given.
    """
    if at.tzinfo is None:
        raise ValueError("se requiere una fecha y hora con zona horaria")
    if not hours or not hours.get("open") or not hours.get("close"):
        return None
    local = at.astimezone(zone) if zone is not None else at
    start, end = window(hours["open"], hours["close"])
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    overnight = end < start
    today = minute >= start and (overnight or minute < end)
    tail = overnight and minute < end  # the night shift that began yesterday
    if not today and not tail:
        return False
    days = hours.get("days")
    if days is None:
        return None
    if today and days[weekday]:
        return _unless_rest_day(all(days), local.date())
    if tail and days[(weekday - 1) % 7]:
        return _unless_rest_day(all(days), local.date() - timedelta(days=1))
    return False


def _unless_rest_day(every_day: bool, day: date) -> bool | None:
    """Open by its weekly hours: so on a working day. On a mandatory rest day (Ley Federal
    del Trabajo art. 74: 1 January, 16 September, 25 December…) the catalog does not say:
    only a unit open every day of the week (a hospital, an emergency room) is known open."""
    if every_day or day not in holidays(day.year):
        return True
    return None


def days_bits(days: list[bool] | None) -> int:
    """Monday = bit 0 .. Sunday = bit 6; -1 when the days are unknown."""
    if days is None:
        return -1
    return sum(1 << i for i, open_day in enumerate(days) if open_day)


def open_mask(
    start: npt.NDArray[np.int16],
    end: npt.NDArray[np.int16],
    bits: npt.NDArray[np.int8],
    weekday: npt.NDArray[np.int8],
    minute: npt.NDArray[np.int16],
    rest_today: npt.NDArray[np.bool_],
    rest_yesterday: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    """Vectorized `is_open(...) is True` over units: `start`/`end` from `window` (-1 when no
    hours), `bits` from `days_bits`, `weekday`/`minute` the local time of each unit and
    whether its today and yesterday are mandatory rest days."""
    has_hours = start >= 0
    overnight = end < start
    today = (minute >= start) & (overnight | (minute < end))
    tail = overnight & (minute < end)
    known = bits >= 0
    b = bits.astype(np.int16)
    every_day = b == 0b1111111
    today_ok = ((b >> weekday) & 1).astype(bool) & (every_day | ~rest_today)
    yesterday_ok = ((b >> ((weekday + 6) % 7)) & 1).astype(bool) & (every_day | ~rest_yesterday)
    result: npt.NDArray[np.bool_] = has_hours & known & ((today & today_ok) | (tail & yesterday_ok))
    return result
