"""The INEGI 2020 census population of states and municipalities (`municipios_inegi.csv` in
the shared data's INEGI folder): read once per process, used by the dashboard, the planner and
the pages that list states. Pure: no database."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

POPULATION_FILE = "municipios_inegi.csv"


@dataclass(frozen=True, slots=True)
class Area:
    key: str
    name: str
    population: int


@dataclass(frozen=True, slots=True)
class StatePopulation:
    key: str
    name: str
    abbreviation: str  # "Hgo."
    population: int
    municipalities: tuple[Area, ...]


@lru_cache(maxsize=4)
def population(inegi_dir: Path) -> dict[str, StatePopulation]:
    """The INEGI 2020 census population of each state and municipality (states in key order),
    read once per process from the shared data folder."""
    path = inegi_dir / POPULATION_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"falta el catálogo {path}; SALUD_SHARED_DATA_DIR indica la carpeta de catálogos"
        )
    names: dict[str, tuple[str, str]] = {}
    municipalities: dict[str, list[Area]] = {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            state, municipality = row["cve_entidad"].strip(), row["cve_municipio"].strip()
            people = row["poblacion_total"].strip()
            if len(state) != 2 or len(municipality) != 3 or not people.isdigit():
                raise RuntimeError(f"{path}, línea {line}: clave o población no válida")
            names.setdefault(state, (row["nom_entidad"].strip(), row["nom_abr_entidad"].strip()))
            municipalities.setdefault(state, []).append(
                Area(municipality, row["nom_municipio"].strip(), int(people))
            )
    return {
        key: StatePopulation(
            key=key,
            name=names[key][0],
            abbreviation=names[key][1],
            population=sum(m.population for m in municipalities[key]),
            municipalities=tuple(sorted(municipalities[key], key=lambda m: m.key)),
        )
        for key in sorted(names)
    }
