"""Official catalogs the registry validates against, read from the shared data folder.

The DGIS AFILIACION catalog (derechohabiencia) gives the institution codes an affiliation may
carry; INEGI gives the state keys an address may carry. Both are read once per process from
`SALUD_SHARED_DATA_DIR`, never copied into the repository.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from salud.config import get_settings


@dataclass(frozen=True, slots=True)
class AffiliationInstitution:
    code: int
    short_name: str
    long_name: str
    active: bool


def _require(path: Path) -> Path:
    if not path.is_file():
        raise RuntimeError(
            f"falta el catálogo {path}; SALUD_SHARED_DATA_DIR indica la carpeta de catálogos"
        )
    return path


@lru_cache(maxsize=4)
def affiliation_catalog(data_dir: Path | None = None) -> dict[int, AffiliationInstitution]:
    path = _require((data_dir or get_settings().shared_data_dir) / "dgis" / "afiliacion.csv")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return {
            int(row["clave"]): AffiliationInstitution(
                code=int(row["clave"]),
                short_name=row["nombre"].strip(),
                long_name=row["nombreLargo"].strip(),
                active=row["activo"].strip().upper() == "SI",
            )
            for row in csv.DictReader(fh)
        }


# Codes that name no institution: a person "affiliated" to them has no entitlement to record.
NON_INSTITUTION_CODES = frozenset({0, 1, 88, 99})


@lru_cache(maxsize=4)
def inegi_state_keys(data_dir: Path | None = None) -> frozenset[str]:
    path = _require(
        (data_dir or get_settings().shared_data_dir) / "inegi" / "estados_curp_inegi.csv"
    )
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return frozenset(
            row["clave_inegi"].strip() for row in csv.DictReader(fh) if row["clave_inegi"].strip()
        )


@lru_cache(maxsize=4)
def inegi_municipality_keys(data_dir: Path | None = None) -> frozenset[str]:
    """State key + municipality key, e.g. "13048" (INEGI Marco Geoestadístico)."""
    path = _require((data_dir or get_settings().shared_data_dir) / "inegi" / "municipios_inegi.csv")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return frozenset(row["cve_completa"].strip() for row in csv.DictReader(fh))
