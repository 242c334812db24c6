"""FHIR dates as the store indexes and searches them: FHIR's grammar only, the leap second
kept, and a moment outside the years 1 to 9999 in UTC refused with a 400 naming the element
(it was an OverflowError, a 500, and ended a bulk import)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from salud.records import bulk
from salud.records.indexing import fhir_instant, interval, is_instant
from tests.conftest import TokenFor
from tests.records.test_fhir_api import IMSS_UNIT, cared_for, clinician, condition, patient
from tests.records.test_fhir_bulk_import import heart_rate, importer, ndjson

ZONES = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)), ZONES)
def test_an_instant_is_the_moment_it_names(moment: datetime, zone: timezone) -> None:
    aware = moment.replace(tzinfo=zone)
    text = aware.isoformat(timespec="microseconds")
    assert is_instant(text)
    assert interval(text) == (aware.astimezone(UTC), aware.astimezone(UTC))


@given(st.text(max_size=40))
def test_anything_else_is_a_value_error_never_another_exception(text: str) -> None:
    try:
        start, end = interval(text)
    except ValueError:
        return
    assert start <= end


@pytest.mark.parametrize(
    "text", ["2024X01", "２０２４", "2024-1-01", "0001-01-01T00:00:00+14:00",
             "9999-12-31T23:00:00-05:00", "2024-01-01T25:00:00Z"],
)  # fmt: skip
def test_malformed_or_unrepresentable_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a FHIR date"):
        interval(text)


def test_the_leap_second_is_the_last_instant_of_its_minute() -> None:
    start, end = interval("2016-12-31T23:59:60Z")
    assert start == end == datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert not is_instant("2016-12-31T23:59:60")  # an instant has its zone


@pytest.mark.db
async def test_the_api_stores_a_leap_second_and_refuses_an_unrepresentable_date(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.fechas")
    await cared_for(client, curp, doctor)
    leap = heart_rate(curp, "x", effectiveDateTime="2016-12-31T23:59:60Z")
    del leap["id"]
    assert (await client.post("/fhir/Observation", json=leap, headers=doctor)).status_code == 201
    far = {**leap, "effectiveDateTime": "0001-01-01T00:00:00+14:00"}
    refused = await client.post("/fhir/Observation", json=far, headers=doctor)
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["Observation.effective[x]"]
    for query in ("date=2024X01", "date=ge0001-01-01T00:00:00%2B14:00"):
        answer = await client.get(f"/fhir/Observation?patient={curp}&{query}", headers=doctor)
        assert answer.status_code == 400, (query, answer.text)


@pytest.mark.db
async def test_a_bulk_line_with_an_unrepresentable_date_is_that_lines_refusal(
    client: httpx.AsyncClient,
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    lines = ndjson(
        heart_rate(curp, "obs-lejos", effectiveDateTime="9999-12-31T23:00:00-05:00"),
        heart_rate(curp, "obs-bien"),
    )
    report = await bulk.import_lines(app.state.sessions, importer(app), lines, source="f")
    assert (report.read, report.created, report.rejected) == (2, 1, 1)
    assert report.rejects[0].line == 1
    assert "Observation.effective[x]" in report.rejects[0].reason


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)))
def test_the_servers_own_last_updated_covers_the_moment_it_keeps(moment: datetime) -> None:
    """meta.lastUpdated is written to the millisecond, the store keeps microseconds: searched
    with the value the server gave, the version is found (it was not, by `eq` nor `le`)."""
    kept = moment.replace(tzinfo=UTC)
    start, end = interval(fhir_instant(kept))
    assert start <= kept <= end
    assert end - start == timedelta(microseconds=999)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2024-01-15T10:00Z", (10, 0, 0, 0), (10, 0, 59, 999_999)),
        ("2024-01-15T10:00:30Z", (10, 0, 30, 0), (10, 0, 30, 999_999)),
        ("2024-01-15T10:00:30.5Z", (10, 0, 30, 500_000), (10, 0, 30, 599_999)),
        ("2024-01-15T10:00:30.123456789Z", (10, 0, 30, 123_456), (10, 0, 30, 123_456)),
    ],
)
def test_a_time_covers_what_its_precision_leaves_open(
    text: str, start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    assert interval(text) == (
        datetime(2024, 1, 15, *start, tzinfo=UTC),
        datetime(2024, 1, 15, *end, tzinfo=UTC),
    )


@pytest.mark.db
async def test_a_search_by_the_last_updated_the_server_gave_finds_the_version(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.fechas")
    await cared_for(client, curp, doctor)
    made = await client.post("/fhir/Condition", json=condition(curp), headers=doctor)
    assert made.status_code == 201, made.text
    stamp = made.json()["meta"]["lastUpdated"]
    for prefix, total in (("", 1), ("le", 1), ("ge", 1), ("gt", 0), ("lt", 0), ("ne", 0)):
        url = f"/fhir/Condition?patient={curp}&_lastUpdated={prefix}{stamp}"
        found = await client.get(url.replace("+", "%2B"), headers=doctor)
        assert found.status_code == 200, found.text
        assert found.json()["total"] == total, (prefix, stamp)


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59:59Z", "9999-12-31T23:59Z", "9999-12-31T23:59:59.999999Z"]
)
def test_the_last_moments_of_9999_end_at_its_last_instant(text: str) -> None:
    """A common open-ended value: its span would pass the year 9999 (an overflow, refused)."""
    start, end = interval(text)
    assert start <= end == datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
