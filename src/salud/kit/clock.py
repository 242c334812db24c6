"""Time in one place: timezone-aware UTC, and the calendar date in Mexico."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

MEXICO_CITY = ZoneInfo("America/Mexico_City")


def utcnow() -> datetime:
    return datetime.now(UTC)


def today_mx() -> date:
    """The civil date in central Mexico (validity of documents and affiliations is civil)."""
    return datetime.now(MEXICO_CITY).date()
