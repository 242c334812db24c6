"""Placing units on the map with the INEGI gazetteer, and what the report must flag."""

from __future__ import annotations

import pytest

from salud.facilities.gazetteer import EXACT, LOCALITY, MUNICIPALITY, NONE, Gazetteer
from salud.kit.geo import haversine_km

# Hidalgo 13: Acatlán 001 (its seat has under 1,000 inhabitants), Pachuca de Soto 048.
HG, ACATLAN, PACHUCA = "13", "001", "048"


def test_states_table(gazetteer: Gazetteer) -> None:
    hidalgo = gazetteer.states.by_code("HG")
    assert hidalgo is not None
    assert hidalgo.key == "13"
    assert gazetteer.states.by_key("09") == gazetteer.states.by_code("DF")
    assert gazetteer.states.by_code("NE") is None  # born abroad is no CLUES state
    assert len(gazetteer.states.codes) == 32


def test_municipality_by_name_ignores_accents_and_case(gazetteer: Gazetteer) -> None:
    assert gazetteer.municipality_key_by_name(HG, "ACATLAN") == ACATLAN
    assert gazetteer.municipality_key_by_name(HG, "acatlán") == ACATLAN
    assert gazetteer.municipality_key_by_name("09", "ÁLVARO OBREGÓN") == "010"
    assert gazetteer.municipality_key_by_name(HG, "Ensenada") is None
    # Two Oaxacan municipalities share this name: ambiguous, so neither.
    assert gazetteer.municipality_key_by_name("20", "San Juan Mixtepec") is None


def test_exact_coordinates_are_kept(gazetteer: Gazetteer) -> None:
    place = gazetteer.place(HG, ACATLAN, "0001", (20.144656, -98.440023))
    assert (place.latitude, place.longitude, place.precision) == (20.144656, -98.440023, EXACT)
    assert place.note is None
    assert not place.outside_mexico
    assert place.far_from_seat_km is None


def test_far_from_the_seat_is_kept_and_flagged(gazetteer: Gazetteer) -> None:
    # Coordinates in Mexico City for a unit said to be in Acatlán, Hidalgo.
    place = gazetteer.place(HG, ACATLAN, None, (19.4326, -99.1332))
    assert place.precision == EXACT
    assert place.latitude == 19.4326
    assert place.far_from_seat_km is not None
    assert place.far_from_seat_km > 50
    # Acatlán's seat is not listed: the distance is to its most populous locality.
    assert place.note is not None
    assert "localidad más poblada de Acatlán" in place.note


def test_outside_mexico_is_discarded_and_placed_at_the_locality(gazetteer: Gazetteer) -> None:
    # The longitude lost its sign: that point is in China.
    place = gazetteer.place(HG, PACHUCA, "0001", (20.1011, 98.7591))
    assert place.outside_mexico
    assert place.precision == LOCALITY
    seat = gazetteer.locality(HG, PACHUCA, "0001")
    assert seat is not None
    assert (place.latitude, place.longitude) == (seat.latitude, seat.longitude)
    assert place.note is not None
    assert "fuera de México" in place.note


def test_unlisted_locality_falls_back_to_the_seat(gazetteer: Gazetteer) -> None:
    place = gazetteer.place(HG, PACHUCA, "9999", None)
    assert place.precision == MUNICIPALITY
    assert place.approximate
    assert place.note is not None
    assert "cabecera municipal de Pachuca de Soto" in place.note
    assert place.latitude is not None
    assert place.longitude is not None
    assert haversine_km(place.latitude, place.longitude, 20.1011, -98.7591) < 5


def test_seat_not_listed_uses_the_most_populous_locality(gazetteer: Gazetteer) -> None:
    # Find a municipality whose seat is not among the listed localities (under 1,000 people).
    for key in (f"{n:03d}" for n in range(1, 571)):
        m = gazetteer.municipality("20", key)
        if m is not None and m.seat is not None and m.seat.key != m.seat_key:
            place = gazetteer.place("20", key, None, None)
            assert place.precision == MUNICIPALITY
            assert place.note is not None
            assert "localidad más poblada" in place.note
            return
    pytest.fail("Oaxaca should have a municipality with an unlisted seat")


def test_nothing_to_place_with(gazetteer: Gazetteer) -> None:
    place = gazetteer.place(HG, None, None, None)
    assert (place.latitude, place.precision) == (None, NONE)
    assert gazetteer.place(HG, None, None, (0.0, 0.0)).outside_mexico
