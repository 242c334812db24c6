"""CIE-10 (ICD-10) codes checked against the DGIS catalog (shared/data/cie10)."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

from salud.config import get_settings

# Systems that mean ICD-10 / CIE-10 in a Coding.
CIE10_SYSTEMS = frozenset(
    {
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-mx",
        "urn:oid:2.16.840.1.113883.6.3",
        "https://salud.gob.mx/fhir/CodeSystem/cie10",
    }
)


@lru_cache(maxsize=2)
def cie10_catalog(data_dir: Path | None = None) -> dict[str, str]:
    """DGIS key (e.g. "A09X", "E119") -> description."""
    path = (data_dir or get_settings().shared_data_dir) / "cie10" / "cie10_siigs_dgis.csv"
    if not path.is_file():
        raise RuntimeError(f"falta el catálogo CIE-10 {path}")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return {
            row["cie10"].strip().upper(): row["descripcion"].strip() for row in csv.DictReader(fh)
        }


def cie10_key(code: str) -> str:
    """The DGIS key form of a code: no dot, upper case; three characters padded with X."""
    key = code.replace(".", "").strip().upper()
    return key + "X" if len(key) == 3 else key


def cie10_known(code: str) -> bool:
    catalog = cie10_catalog()
    key = code.replace(".", "").strip().upper()
    return key in catalog or cie10_key(code) in catalog
