"""The k-d tree answers exactly what a brute-force haversine scan over the catalog answers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from salud.facilities.gazetteer import Gazetteer
from salud.facilities.hours import is_open, zone_for_unit
from salud.facilities.importers import read_file
from salud.facilities.nearest import NearestIndex, chord_for_km, is_place_of_care, km_for_chord
from salud.kit.geo import haversine_km, in_mexico

Unit = dict[str, Any]


@pytest.fixture(scope="module")
def units(clues_dir: Path, gazetteer: Gazetteer) -> list[Unit]:
    """The real units with coordinates (IMSS-Bienestar and 7 states), with the real hours."""
    hours = {
        r.clues: r.hours
        for r in read_file(
            clues_dir / "clues_national_horarios_202604.csv", gazetteer.states
        ).records
    }
    rows: list[Unit] = []
    for name in ("clues_imss_bienestar_202606.csv", "clues_other_institutions_7states.csv"):
        for r in read_file(clues_dir / name, gazetteer.states).records:
            if r.coordinates is None or not in_mexico(*r.coordinates):
                continue
            rows.append(
                {
                    "clues": r.clues,
                    "name": r.values["name"],
                    "institution_code": r.clues[2:5],
                    "state_code": r.clues[:2],
                    "state_key": r.values.get("state_key"),
                    "municipality_key": r.values.get("municipality_key"),
                    "level_of_care": r.values.get("level_of_care"),
                    "in_operation": r.values.get("in_operation"),
                    "latitude": r.coordinates[0],
                    "longitude": r.coordinates[1],
                    "location_precision": "exact",
                    "hours": hours.get(r.clues),
                }
            )
    return rows


@pytest.fixture(scope="module")
def index(units: list[Unit]) -> NearestIndex:
    return NearestIndex.build(units)


def brute_force(
    units: list[Unit],
    lat: float,
    lng: float,
    k: int,
    max_km: float | None,
    institutions: frozenset[str] | None,
    level: int | None,
    in_operation: bool | None,
    open_now: bool,
    moment: datetime,
) -> list[tuple[float, Unit]]:
    found = []
    for u in units:
        if institutions is not None and u["institution_code"] not in institutions:
            continue
        if level is not None and u["level_of_care"] != level:
            continue
        if in_operation is not None and u["in_operation"] is not in_operation:
            continue
        zone = zone_for_unit(u["state_code"], u["state_key"], u["municipality_key"])
        if open_now and is_open(u["hours"], moment, zone) is not True:
            continue
        km = haversine_km(lat, lng, u["latitude"], u["longitude"])
        if max_km is None or km <= max_km:
            found.append((km, u))
    found.sort(key=lambda pair: pair[0])
    return found


codes = st.sampled_from(["IMB", "IMS", "IST", "SSA", "PMX", "SDN", "SMA", "SMP", "CRO", "XXX"])
queries = st.fixed_dictionaries(
    {
        "lat": st.floats(14.5, 32.7),
        "lng": st.floats(-118.0, -86.7),
        "k": st.integers(1, 50),
        "max_km": st.none() | st.floats(1.0, 800.0),
        "institutions": st.none() | st.frozensets(codes, min_size=1, max_size=6),
        "level": st.none() | st.sampled_from([1, 2, 3]),
        "in_operation": st.sampled_from([True, False, None]),
        "open_now": st.booleans(),
        "moment": st.datetimes(
            min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
        ),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=queries)
def test_matches_brute_force(index: NearestIndex, units: list[Unit], q: dict[str, Any]) -> None:
    expected = brute_force(
        units, q["lat"], q["lng"], q["k"], q["max_km"], q["institutions"], q["level"],
        q["in_operation"], q["open_now"], q["moment"],
    )  # fmt: skip
    if q["max_km"] is not None:
        # A unit at the very edge of the radius may fall on either side of it.
        assume(all(abs(km - q["max_km"]) > 1e-6 for km, _ in expected))
    hits = index.query(
        q["lat"], q["lng"], q["k"], max_km=q["max_km"], institutions=q["institutions"],
        level=q["level"], in_operation=q["in_operation"], open_now=q["open_now"], at=q["moment"],
    )  # fmt: skip
    top = expected[: q["k"]]
    assert len(hits) == len(top)
    by_key = {u["clues"]: u for u in units}
    true_km = []
    for hit in hits:
        unit = by_key[hit.clues]
        km = haversine_km(q["lat"], q["lng"], unit["latitude"], unit["longitude"])
        assert abs(hit.distance_km - km) <= 0.0051
        true_km.append(km)
        assert hit.open_now == is_open(
            unit["hours"],
            q["moment"],
            zone_for_unit(unit["state_code"], unit["state_key"], unit["municipality_key"]),
        )
    # Same distances in the same order: the same units up to ties.
    assert true_km == pytest.approx([km for km, _ in top], abs=1e-6)
    strictly_closer = {u["clues"] for km, u in top if top and km < top[-1][0] - 1e-6}
    assert strictly_closer <= {h.clues for h in hits}


def test_typical_query(index: NearestIndex) -> None:
    # Pachuca, Hidalgo: the nearest IMSS units.
    hits = index.query(20.1011, -98.7591, 5, institutions={"IMS"})
    assert len(hits) == 5
    assert all(h.institution_code == "IMS" for h in hits)
    assert [h.distance_km for h in hits] == sorted(h.distance_km for h in hits)
    assert hits[0].distance_km < 5


def test_no_match_and_empty_index(index: NearestIndex) -> None:
    assert index.query(19.4, -99.1, 5, institutions={"ZZZ"}) == []
    assert index.query(19.4, -99.1, 5, max_km=0.001) == []
    assert NearestIndex.build([]).query(19.4, -99.1) == []


@given(st.floats(0.0, 20_000.0))
def test_chord_and_km_round_trip(km: float) -> None:
    assert km_for_chord(chord_for_km(km)) == pytest.approx(km, abs=1e-6)


@pytest.mark.parametrize(
    ("unit_type", "typology", "expected"),
    [
        (None, "URBANO DE 01 NÚCLEOS BÁSICOS", True),
        ("Hospital General de Zona", None, True),
        ("HOSPITAL PSIQUIÁTRICO", None, True),
        ("CONSULTORIO ADYACENTE A FARMACIA", None, True),
        ("CASA DE SALUD", None, True),
        (None, "ALMACENES", False),
        ("OFICINAS ADMINISTRATIVAS", None, False),
        (None, "UNIDAD MÓVIL", False),
        ("UNIDAD MEDICA MOVIL", None, False),
        ("DE CONSULTA EXTERNA", "UNIDAD MÓVIL", False),
        ("BRIGADAS DE SALUD", None, False),
        ("LABORATORIOS", None, False),
        ("OTROS ESTABLECIMIENTOS DE APOYO", None, False),
        ("CENTRO ESTATAL DE TRASFUSIÓN SANGUÍNEA", None, False),
        ("Um Temporal Covid", None, False),
        ("Consultorio Medico en Centro de Trabajo", None, False),
        (None, None, True),  # nothing said: kept
    ],
)
def test_what_is_a_place_of_care(
    unit_type: str | None, typology: str | None, expected: bool
) -> None:
    assert is_place_of_care(unit_type, typology) is expected
