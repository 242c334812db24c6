"""`salud facilities ...` against the test database."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from salud.cli.facilities import app
from tests.facilities.helpers import SAMPLE, read_rows, write_csv

pytestmark = pytest.mark.db


def test_import_then_nearest(cli_env: CliRunner, clues_dir: Path, tmp_path: Path) -> None:
    header, rows = read_rows(clues_dir / SAMPLE)
    rows.append(["HGIMB00001X", *rows[0][1:]])
    path = write_csv(tmp_path / SAMPLE, header, rows)
    rejects = tmp_path / "rechazadas.csv"
    result = cli_env.invoke(app, ["import", str(path), "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    assert "512 unidades nuevas" in result.output
    assert "1 rechazadas" in result.output
    assert "HGIMB00001X" in rejects.read_text(encoding="utf-8")

    found = cli_env.invoke(app, ["nearest", "--lat", "20.1447", "--lng", "-98.44", "--k", "3"])
    assert found.exit_code == 0, found.output
    assert "HGIMB000011" in found.output

    bad = cli_env.invoke(app, ["nearest", "--lat", "95", "--lng", "-98.44"])
    assert bad.exit_code == 2
    assert "latitud" in bad.output


def test_unknown_file_is_said_clearly(cli_env: CliRunner, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "otra_cosa.csv", ["a", "b"], [["1", "2"]])
    result = cli_env.invoke(app, ["import", str(path)])
    assert result.exit_code == 2
    assert "ningún formato conocido" in result.output
