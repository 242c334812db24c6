"""INEGI gazetteer: states, municipalities and localities, to place units without coordinates.

The INEGI files list every municipality (with its seat, `cve_cabecera`) and the localities of
1,000 or more inhabitants with their coordinates (census 2020). A unit without usable
coordinates is placed at its locality when that locality is listed, else at the seat of its
municipality, and is then marked as approximate: a map must never show it as exact.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from salud.kit.geo import haversine_km, in_mexico
from salud.kit.text import search_key

# A unit farther than this from its municipality seat is kept where the source says, but
# reported: municipalities this large exist (Ensenada, Mulegé), typos in the source too.
FAR_FROM_SEAT_KM = 50.0

EXACT = "exact"
LOCALITY = "locality"
MUNICIPALITY = "municipality"
NONE = "none"
# Higher is better; an approximate placement never replaces a better one.
PRECISION_RANK = {NONE: 0, MUNICIPALITY: 1, LOCALITY: 2, EXACT: 3}


@dataclass(frozen=True, slots=True)
class State:
    code: str  # CURP/CLUES letters: HG
    name: str
    key: str  # INEGI: 13


@dataclass(frozen=True, slots=True)
class Locality:
    state_key: str
    municipality_key: str
    key: str
    name: str
    latitude: float
    longitude: float
    population: int


@dataclass(frozen=True, slots=True)
class Municipality:
    state_key: str
    key: str
    name: str
    seat_key: str
    # The seat if INEGI lists it (1,000+ inhabitants), else the most populous listed locality.
    seat: Locality | None


class StateTable:
    """CURP/CLUES state letters <-> INEGI keys. NE (born abroad) is not a CLUES state."""

    def __init__(self, states: list[State]) -> None:
        self._by_code = {s.code: s for s in states if s.code != "NE"}
        self._by_key = {s.key: s for s in self._by_code.values()}

    @classmethod
    def load(cls, path: Path) -> StateTable:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return cls([State(r["code"], r["name"], r["clave_inegi"].zfill(2)) for r in rows])

    def by_code(self, code: str) -> State | None:
        return self._by_code.get(code)

    def by_key(self, key: str) -> State | None:
        return self._by_key.get(key)

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(self._by_code)


@dataclass(frozen=True, slots=True)
class Placement:
    latitude: float | None
    longitude: float | None
    precision: str
    note: str | None
    # What the import report lists.
    outside_mexico: bool = False
    far_from_seat_km: float | None = None

    @property
    def approximate(self) -> bool:
        return self.precision in (LOCALITY, MUNICIPALITY)


class Gazetteer:
    def __init__(
        self,
        states: StateTable,
        municipalities: dict[tuple[str, str], Municipality],
        localities: dict[tuple[str, str, str], Locality],
    ) -> None:
        self.states = states
        self._municipalities = municipalities
        self._localities = localities
        names: dict[str, dict[str, str | None]] = defaultdict(dict)
        for (state_key, key), m in municipalities.items():
            folded = search_key(m.name)
            # Two municipalities of one state may share a name (Oaxaca): such a name is
            # ambiguous and matches neither.
            names[state_key][folded] = None if folded in names[state_key] else key
        self._names = dict(names)

    @classmethod
    def load(cls, inegi_dir: Path) -> Gazetteer:
        states = StateTable.load(inegi_dir / "estados_curp_inegi.csv")
        localities: dict[tuple[str, str, str], Locality] = {}
        with (inegi_dir / "localidades_inegi.csv").open(encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                loc = Locality(
                    r["cve_entidad"],
                    r["cve_municipio"],
                    r["cve_localidad"],
                    r["nom_localidad"],
                    float(r["latitud"]),
                    float(r["longitud"]),
                    int(r["poblacion_total"] or 0),
                )
                localities[(loc.state_key, loc.municipality_key, loc.key)] = loc
        largest: dict[tuple[str, str], Locality] = {}
        for loc in localities.values():
            mkey = (loc.state_key, loc.municipality_key)
            if mkey not in largest or loc.population > largest[mkey].population:
                largest[mkey] = loc
        municipalities: dict[tuple[str, str], Municipality] = {}
        with (inegi_dir / "municipios_inegi.csv").open(encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                mkey = (r["cve_entidad"], r["cve_municipio"])
                seat = localities.get((*mkey, r["cve_cabecera"])) or largest.get(mkey)
                municipalities[mkey] = Municipality(
                    r["cve_entidad"],
                    r["cve_municipio"],
                    r["nom_municipio"],
                    r["cve_cabecera"],
                    seat,
                )
        return cls(states, municipalities, localities)

    def municipality(self, state_key: str, key: str) -> Municipality | None:
        return self._municipalities.get((state_key, key))

    def municipality_key_by_name(self, state_key: str, name: str) -> str | None:
        """Accent- and case-insensitive match of a municipality name within its state."""
        return self._names.get(state_key, {}).get(search_key(name))

    def locality(self, state_key: str, municipality_key: str, key: str) -> Locality | None:
        return self._localities.get((state_key, municipality_key, key))

    def place(
        self,
        state_key: str | None,
        municipality_key: str | None,
        locality_key: str | None,
        coordinates: tuple[float, float] | None,
    ) -> Placement:
        """Where a unit goes on the map, and what the import report must say about it."""
        municipality = (
            self.municipality(state_key, municipality_key)
            if state_key and municipality_key
            else None
        )
        discarded: str | None = None
        if coordinates is not None:
            lat, lng = coordinates
            if in_mexico(lat, lng):
                seat = municipality.seat if municipality else None
                if seat is not None:
                    km = haversine_km(lat, lng, seat.latitude, seat.longitude)
                    if km > FAR_FROM_SEAT_KM and municipality is not None:
                        note = (
                            f"Coordenadas a {km:.0f} km de {_seat_label(municipality, seat)}: "
                            "verificar en la fuente"
                        )
                        return Placement(lat, lng, EXACT, note, far_from_seat_km=round(km, 1))
                return Placement(lat, lng, EXACT, None)
            discarded = f"Coordenadas de la fuente ({lat}, {lng}) fuera de México, descartadas"
        approximate = self._approximate(municipality, locality_key)
        if approximate is None:
            note = discarded or "Sin coordenadas en la fuente"
            return Placement(None, None, NONE, note, outside_mexico=discarded is not None)
        lat, lng, precision, where = approximate
        note = f"Ubicación aproximada: {where} (INEGI)"
        if discarded:
            note = f"{discarded}. {note}"
        return Placement(lat, lng, precision, note, outside_mexico=discarded is not None)

    def point(
        self, state_key: str, municipality_key: str, locality_key: str | None
    ) -> tuple[float, float, str] | None:
        """Coordinates of an address known by INEGI keys: its locality, else the municipal
        seat; with the precision ("locality" or "municipality"). None when unknown."""
        found = self._approximate(self.municipality(state_key, municipality_key), locality_key)
        return None if found is None else found[:3]

    def _approximate(
        self, municipality: Municipality | None, locality_key: str | None
    ) -> tuple[float, float, str, str] | None:
        if municipality is None:
            return None
        if locality_key:
            loc = self.locality(municipality.state_key, municipality.key, locality_key)
            if loc is not None:
                return loc.latitude, loc.longitude, LOCALITY, f"localidad {loc.name}"
        seat = municipality.seat
        if seat is None:
            return None
        return seat.latitude, seat.longitude, MUNICIPALITY, _seat_label(municipality, seat)


def _seat_label(municipality: Municipality, seat: Locality) -> str:
    if seat.key == municipality.seat_key:
        return f"la cabecera municipal de {municipality.name}"
    return f"{seat.name}, localidad más poblada de {municipality.name}"
