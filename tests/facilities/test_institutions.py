"""Institution codes of the CLUES key and who may be served where."""

from __future__ import annotations

import csv
from pathlib import Path

from salud.facilities.institutions import (
    INSTITUTIONS,
    OPEN_TO_ALL,
    institution_name,
    institutions_for_affiliations,
)


def test_every_main_code_is_in_the_national_list(clues_dir: Path) -> None:
    with (clues_dir / "clues_national_horarios_202604.csv").open(encoding="utf-8") as fh:
        present = {row["INST"] for row in csv.DictReader(fh)}
    assert {"IMB", "IMS", "IST", "SSA", "PMX", "SDN", "SMA", "IMO"} <= present
    assert set(INSTITUTIONS) <= present
    assert institution_name("IST") is not None
    assert institution_name("ZZZ") is None


def test_affiliations_to_institutions(shared_data: Path) -> None:
    with (shared_data / "dgis" / "afiliacion.csv").open(encoding="utf-8") as fh:
        names = {int(r["clave"]): r["nombre"] for r in csv.DictReader(fh)}
    assert (names[2], names[3], names[11]) == ("IMSS", "ISSSTE", "ISSFAM")
    # Anyone, insured or not, may use the IMSS-Bienestar and state services units.
    assert institutions_for_affiliations([]) == OPEN_TO_ALL
    assert {"IMB", "SSA"} <= OPEN_TO_ALL
    assert institutions_for_affiliations([2]) == OPEN_TO_ALL | {"IMS"}
    assert institutions_for_affiliations([3, 4]) == OPEN_TO_ALL | {"IST", "PMX"}
    assert institutions_for_affiliations([5]) == OPEN_TO_ALL | {"SDN"}
    assert institutions_for_affiliations([6]) == OPEN_TO_ALL | {"SMA"}
    assert institutions_for_affiliations([11]) == OPEN_TO_ALL | {"SDN", "SMA"}
    assert institutions_for_affiliations([10, 14, 0, 1, 99]) == OPEN_TO_ALL
