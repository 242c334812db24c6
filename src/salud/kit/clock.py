"""Time in one place: timezone-aware UTC, and the calendar date in Mexico."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

MEXICO_CITY = ZoneInfo("America/Mexico_City")


def utcnow() -> datetime:
    return datetime.now(UTC)


_today_cache: tuple[float, date] = (0.0, date.min)


def today_mx() -> date:
    """The civil date in central Mexico (validity of documents and affiliations is civil).

    Re-read at most once a second: validation calls it for every row of a bulk import."""
    global _today_cache
    now = time.monotonic()
    if now - _today_cache[0] >= 1.0:
        _today_cache = (now, datetime.now(MEXICO_CITY).date())
    return _today_cache[1]
