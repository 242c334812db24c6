"""Small files for the catalog tests, built in tmp_path from the real ones."""

from __future__ import annotations

import csv
from pathlib import Path

SAMPLE = "ESTABLECIMIENTO_SALUD_202501_hidalgo_imb_sample.csv"


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_csv(
    path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8"
) -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path
