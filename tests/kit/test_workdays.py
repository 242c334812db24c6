"""Working days for legal terms (LFT art. 74 rest days)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from salud.kit.workdays import add_workdays, holidays, is_workday, received_on


def test_official_rest_days_of_2026() -> None:
    assert holidays(2026) == {
        date(2026, 1, 1),
        date(2026, 2, 2),
        date(2026, 3, 16),
        date(2026, 5, 1),
        date(2026, 9, 16),
        date(2026, 11, 16),
        date(2026, 12, 25),
    }
    assert date(2030, 10, 1) in holidays(2030)  # change of federal government


def test_twenty_working_days_skip_weekends_and_holidays() -> None:
    # Filed Friday 2026-11-06: the 16th (Revolución) and weekends do not count.
    assert add_workdays(date(2026, 11, 6), 20) == date(2026, 12, 7)


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)), st.integers(1, 60))
def test_result_is_a_workday_with_exactly_n_workdays_between(start: date, n: int) -> None:
    end = add_workdays(start, n)
    assert is_workday(end)
    between = sum(is_workday(start + timedelta(days=i)) for i in range(1, (end - start).days + 1))
    assert between == n


def test_a_filing_on_a_rest_day_counts_from_the_next_working_day() -> None:
    # Filed Saturday 2026-03-14: received Tuesday the 17th (Monday the 16th is Juárez's day).
    assert received_on(date(2026, 3, 14)) == date(2026, 3, 17)
    friday = add_workdays(received_on(date(2026, 3, 13)), 20)
    saturday = add_workdays(received_on(date(2026, 3, 14)), 20)
    assert saturday == add_workdays(friday, 1)  # one working day later than Friday's


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)))
def test_received_on_is_the_first_working_day_from_the_filing(filed: date) -> None:
    day = received_on(filed)
    assert is_workday(day)
    assert not any(is_workday(filed + timedelta(days=i)) for i in range((day - filed).days))
