"""CLUES institution codes (characters 3-5 of the key) and who may be served where.

Codes checked against the April 2026 national CLUES list: SSA, SMP, IMB, IMS, IMO, IST, DIF,
SME, SDN, SMM, CRO, FGE, CIJ, PMX, HUN, SMA, SCT, PGR, SPC, ICF, PJE.
"""

from __future__ import annotations

from collections.abc import Iterable

INSTITUTIONS: dict[str, str] = {
    "SSA": "Secretaría de Salud (servicios estatales de salud)",
    "IMB": "Servicios de Salud IMSS-Bienestar",
    "IMO": "IMSS-Bienestar (programa del IMSS)",
    "IMS": "Instituto Mexicano del Seguro Social (IMSS)",
    "IST": "Instituto de Seguridad y Servicios Sociales de los Trabajadores del Estado (ISSSTE)",
    "PMX": "Petróleos Mexicanos (PEMEX)",
    "SDN": "Secretaría de la Defensa Nacional (SEDENA)",
    "SMA": "Secretaría de Marina (SEMAR)",
    "SME": "Servicios médicos estatales",
    "SMM": "Servicios médicos municipales",
    "SMP": "Servicios médicos privados",
    "DIF": "Sistema Nacional para el Desarrollo Integral de la Familia (DIF)",
    "CRO": "Cruz Roja Mexicana",
    "CIJ": "Centros de Integración Juvenil",
    "HUN": "Hospitales universitarios",
    "FGE": "Fiscalía General del Estado",
    "PGR": "Fiscalía General de la República",
    "SCT": "Secretaría de Infraestructura, Comunicaciones y Transportes",
    "SPC": "Secretaría de Seguridad y Protección Ciudadana",
    "PJE": "Poder Judicial del Estado",
}

# Units that serve anyone, with or without social security (Ley General de Salud, art. 77
# bis 1: the IMSS-Bienestar system covers everyone not affiliated to a social security
# institution). IMO, IMSS's own IMSS-Bienestar programme (rural units), serves the same people.
OPEN_TO_ALL: frozenset[str] = frozenset({"IMB", "SSA", "IMO"})

# DGIS affiliation (derechohabiencia) catalog code -> CLUES institution codes of its units.
_BY_AFFILIATION: dict[int, frozenset[str]] = {
    2: frozenset({"IMS"}),  # IMSS
    3: frozenset({"IST"}),  # ISSSTE
    4: frozenset({"PMX"}),  # PEMEX
    5: frozenset({"SDN"}),  # SEDENA
    6: frozenset({"SMA"}),  # SEMAR
    10: frozenset(),  # IMSS Bienestar: the units open to all
    11: frozenset({"SDN", "SMA"}),  # ISSFAM covers both armed forces
    14: frozenset(),  # OPD IMSS Bienestar
}


# The same institution under its CLUES letters and its DGIS AFILIACION code: who it is, not
# who may be served where (that is `_BY_AFFILIATION`). IMO is IMSS's own IMSS-Bienestar
# programme (DGIS 10, "régimen Bienestar"); IMB the decentralized Servicios de Salud
# IMSS-Bienestar (DGIS 14, "OPD IMSS Bienestar"). The other CLUES institutions (SSA, DIF, Cruz
# Roja, private units…) carry no DGIS affiliation code.
AFFILIATION_CODE: dict[str, int] = {
    "IMS": 2, "IST": 3, "PMX": 4, "SDN": 5, "SMA": 6, "IMO": 10, "IMB": 14,
}  # fmt: skip


def institution_name(code: str) -> str | None:
    return INSTITUTIONS.get(code)


def institutions_for_affiliations(dgis_codes: Iterable[int]) -> frozenset[str]:
    """The CLUES institutions whose units a person with these affiliations may use."""
    result = set(OPEN_TO_ALL)
    for code in dgis_codes:
        result |= _BY_AFFILIATION.get(code, frozenset())
    return frozenset(result)
