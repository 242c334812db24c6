"""Great-circle helpers (WGS84 sphere approximation; errors < 0.5 % at Mexican distances)."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088

# Bounding box of the Mexican territory including islands (Guadalupe, Revillagigedo).
MEXICO_LAT = (14.0, 33.0)
MEXICO_LNG = (-118.7, -86.3)


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def in_mexico(lat: float, lng: float) -> bool:
    return MEXICO_LAT[0] <= lat <= MEXICO_LAT[1] and MEXICO_LNG[0] <= lng <= MEXICO_LNG[1]
