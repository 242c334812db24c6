"""Opening hours: open or closed at a moment, including night shifts past midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from salud.facilities.hours import (
    days_bits,
    is_open,
    open_mask,
    parse_time,
    window,
    zone_for_state,
    zone_for_unit,
)
from salud.kit.workdays import holidays

MX = ZoneInfo("America/Mexico_City")
# 2026-11-23 is a Monday.
MONDAY = datetime(2026, 11, 23, tzinfo=MX)
WEEKDAYS = [True, True, True, True, True, False, False]


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hh, minutes=mm)


def test_day_shift() -> None:
    hours = {"days": WEEKDAYS, "open": "08:00", "close": "16:00"}
    assert is_open(hours, at(0, 8)) is True
    assert is_open(hours, at(0, 15, 59)) is True
    assert is_open(hours, at(0, 16)) is False
    assert is_open(hours, at(0, 7, 59)) is False
    assert is_open(hours, at(5, 10)) is False  # Saturday


def test_night_shift_belongs_to_the_day_it_starts() -> None:
    # Friday 20:00 to Saturday 08:00; Saturday is not an opening day.
    hours = {"days": WEEKDAYS, "open": "20:00", "close": "08:00"}
    assert is_open(hours, at(4, 23)) is True
    assert is_open(hours, at(5, 3)) is True  # Saturday 03:00, Friday's shift
    assert is_open(hours, at(5, 21)) is False  # Saturday night: no shift starts
    assert is_open(hours, at(0, 3)) is False  # Monday 03:00: Sunday had no shift
    assert is_open(hours, at(1, 3)) is True


@pytest.mark.parametrize("close", ["24:00", "23:59", "00:00"])
def test_midnight_closings(close: str) -> None:
    hours = {"days": [True] * 7, "open": "09:00", "close": close}
    assert window("09:00", close) == (540, 1440)
    assert is_open(hours, at(0, 23, 58)) is True
    assert is_open(hours, at(1, 0, 30)) is False
    assert is_open(hours, at(1, 8, 59)) is False


def test_round_the_clock() -> None:
    hours = {"days": [True] * 7, "open": "00:00", "close": "23:59"}
    assert all(is_open(hours, at(d, h)) for d in range(7) for h in range(24))


def test_unknown_days_can_only_say_closed() -> None:
    hours = {"days": None, "open": "08:00", "close": "16:00"}
    assert is_open(hours, at(0, 10)) is None
    assert is_open(hours, at(0, 20)) is False
    assert is_open(None, at(0, 10)) is None


def test_zone_of_the_unit() -> None:
    hours = {"days": [True] * 7, "open": "08:00", "close": "09:00"}
    moment = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 09:30 in CDMX, 08:30 in Hermosillo
    assert is_open(hours, moment, zone_for_state("DF")) is False
    assert is_open(hours, moment, zone_for_state("SR")) is True
    assert zone_for_state("QR").key == "America/Cancun"
    assert zone_for_state("HG").key == "America/Mexico_City"
    with pytest.raises(ValueError, match="zona horaria"):
        is_open(hours, datetime(2026, 1, 1))


def test_municipalities_the_law_places_apart_from_their_state() -> None:
    """Ley de los Husos Horarios (2022): the northern border keeps the United States'
    daylight time, and Bahía de Banderas keeps central time while Nayarit is on Pacific."""
    hours = {"days": [True] * 7, "open": "08:00", "close": "09:00"}
    july = datetime(2026, 7, 15, 13, 30, tzinfo=UTC)  # 07:30 in Mexico City, 08:30 in Reynosa
    assert is_open(hours, july, zone_for_unit("TS", "28", "032")) is True  # Reynosa
    assert is_open(hours, july, zone_for_unit("TS", "28", "041")) is False  # Victoria
    assert is_open(hours, july, zone_for_unit("TS", None, None)) is False  # by its state
    december = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)  # no daylight time: 08:30 in both
    assert is_open(hours, december, zone_for_unit("TS", "28", "032")) is True
    assert is_open(hours, december, zone_for_unit("TS", "28", "041")) is True
    morning = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 08:30 in Tepic, 09:30 at the bay
    assert is_open(hours, morning, zone_for_unit("NT", "18", "017")) is True  # Tepic
    assert is_open(hours, morning, zone_for_unit("NT", "18", "020")) is False  # Bahía
    assert zone_for_unit("CH", "08", "037").key == "America/Ciudad_Juarez"
    assert zone_for_unit("CH", "08", "052").key == "America/Ojinaga"
    assert zone_for_unit("CH", "08", "019").key == "America/Chihuahua"  # the capital


@pytest.mark.parametrize("bad", ["8", "25:00", "24:30", "12:60", "ab:cd", ""])
def test_bad_times(bad: str) -> None:
    with pytest.raises(ValueError, match="hora inválida"):
        parse_time(bad)


def test_short_hour_is_padded() -> None:
    assert parse_time("8:05") == "08:05"


times = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)
) | st.just("24:00")
schedules = st.fixed_dictionaries(
    {
        "days": st.none() | st.lists(st.booleans(), min_size=7, max_size=7),
        "open": times,
        "close": times,
    }
)
moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(MX)
) | st.sampled_from(  # around mandatory rest days, which a random moment seldom hits
    [datetime(y, m, d, h, tzinfo=MX) for y in (2025, 2026) for m, d in ((1, 1), (9, 16),
     (12, 25), (12, 26), (1, 2)) for h in (0, 3, 9, 23)]
)  # fmt: skip


def _yesterday(moment: datetime) -> date:
    return moment.date() - timedelta(days=1)


def _oracle(hours: dict[str, Any], moment: datetime) -> bool | None:
    """Minute-of-week sets, built independently of the implementation."""

    def mins(text: str) -> int:
        hh, mm = map(int, text.split(":"))
        return hh * 60 + mm

    start, end = mins(hours["open"]), mins(hours["close"])
    if end in (0, 1439, 1440):
        end = 1440
    if start == end:
        start, end = 0, 1440
    length = end - start if end > start else 1440 - start + end
    week = 7 * 1440
    now = moment.weekday() * 1440 + moment.hour * 60 + moment.minute
    open_any = open_known = on_rest_day = False
    days = hours["days"]
    for day in range(7):
        begin = day * 1440 + start
        since = (now - begin) % week
        if since < length:
            open_any = True
            if days is not None and days[day]:
                # The day the schedule gives the shift (a shift "from 24:00" is still the
                # day's own): its date decides whether it fell on a mandatory rest day.
                nominal = (moment - timedelta(minutes=(now - day * 1440) % week)).date()
                if all(days) or nominal not in holidays(nominal.year):
                    open_known = True
                else:
                    on_rest_day = True
    if not open_any:
        return False
    if days is None or (on_rest_day and not open_known):
        return None
    return open_known


@given(schedules, moments)
def test_is_open_matches_the_minute_of_week_oracle(hours: dict[str, Any], moment: datetime) -> None:
    assert is_open(hours, moment) == _oracle(hours, moment)


@given(st.lists(st.tuples(schedules, moments), min_size=1, max_size=30))
def test_vectorized_mask_matches_is_open(cases: list[tuple[dict[str, Any], datetime]]) -> None:
    starts, ends = zip(*(window(h["open"], h["close"]) for h, _ in cases), strict=True)
    mask = open_mask(
        np.array(starts, dtype=np.int16),
        np.array(ends, dtype=np.int16),
        np.array([days_bits(h["days"]) for h, _ in cases], dtype=np.int8),
        np.array([m.weekday() for _, m in cases], dtype=np.int8),
        np.array([m.hour * 60 + m.minute for _, m in cases], dtype=np.int16),
        np.array([m.date() in holidays(m.year) for _, m in cases], dtype=np.bool_),
        np.array([_yesterday(m) in holidays(_yesterday(m).year) for _, m in cases], dtype=np.bool_),
    )
    assert mask.tolist() == [is_open(h, m) is True for h, m in cases]


def test_on_a_mandatory_rest_day_only_an_every_day_unit_is_known_open() -> None:
    """25 December 2026 is a Friday: a Monday-to-Friday clinic's hours say nothing about it,
    a unit open every day (an emergency room) is open; the night shift begun on the 24th
    holds until it ends, and one begun on the 25th is not known."""
    christmas = datetime(2026, 12, 25, 10, tzinfo=MX)
    clinic = {"days": WEEKDAYS, "open": "08:00", "close": "16:00"}
    assert is_open(clinic, christmas) is None
    assert is_open(clinic, christmas - timedelta(days=1)) is True
    assert is_open(clinic, christmas.replace(hour=20)) is False  # outside hours: closed
    er = {"days": [True] * 7, "open": "00:00", "close": "24:00"}
    assert is_open(er, christmas) is True
    night = {"days": WEEKDAYS, "open": "20:00", "close": "06:00"}
    assert is_open(night, christmas.replace(hour=3)) is True  # Thursday the 24th's shift
    assert is_open(night, christmas.replace(hour=22)) is None
