"""A command that cannot do its work says why (`Error: …` on stderr, exit code 2) and never
ends in a traceback; production refuses the public development secrets; an import never
writes its rejects over the file it reads."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from salud.cli.main import app
from salud.config import get_settings

pytestmark = pytest.mark.db


def refused(result: Any) -> str:
    """The message of a command that failed as it should: exit code 2, `Error: …` on stderr,
    no traceback. As one line (the console folds long lines)."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    text = " ".join(result.stderr.split())
    assert text.startswith("Error: "), text
    return text


@pytest.fixture
def empty_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CLI runner on a database that was never migrated."""
    monkeypatch.setenv("SALUD_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'vacia.db'}")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_an_unmigrated_database_is_named(empty_db: CliRunner) -> None:
    message = refused(empty_db.invoke(app, ["audit", "verify", "-q"]))
    assert "salud db upgrade" in message


def test_a_missing_file_is_named(cli_env: CliRunner, tmp_path: Path) -> None:
    people = tmp_path / "personas.csv"
    people.write_text("curp,first_surname,given_names\n", encoding="utf-8")
    rejects = tmp_path / "no-existe" / "rechazos.csv"
    message = refused(cli_env.invoke(app, ["persons", "import", str(people), "-q",
                                           "--rejects", str(rejects)]))  # fmt: skip
    assert f"{rejects}: no existe" in message
    message = refused(cli_env.invoke(app, ["credentials", "verify", "ABC", "--keys",
                                           str(tmp_path / "llaves.json")]))  # fmt: skip
    assert "llaves.json: no existe" in message


def test_a_bad_csv_is_told(cli_env: CliRunner, tmp_path: Path) -> None:
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("curp,first_surname,given_names\nX,NÚÑEZ,JOSÉ\n".encode("latin-1"))
    message = refused(cli_env.invoke(app, ["persons", "import", str(latin), "-q"]))
    assert "latin1.csv" in message
    assert "UTF-8" in message
    assert not (tmp_path / "latin1.csv.rechazos.csv").exists()
    other = tmp_path / "otro.csv"
    other.write_text("nombre,telefono\nJUANA,5555555555\n", encoding="utf-8")
    message = refused(cli_env.invoke(app, ["persons", "import", str(other), "-q"]))
    assert "al CSV le faltan columnas: curp" in message
    not_xlsx = tmp_path / "ESTABLECIMIENTO_SALUD_202501.xlsx"
    not_xlsx.write_bytes(b"esto no es un libro de Excel")
    refused(cli_env.invoke(app, ["facilities", "import", str(not_xlsx)]))


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SALUD_MAX_PAGE_SIZE", "muchos"), ("SALUD_KEK_ID", "llave-ñ"), ("SALUD_LOG_LEVEL", "ruido")],
)
def test_a_malformed_setting_is_named(
    cli_env: CliRunner, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    message = refused(cli_env.invoke(app, ["audit", "verify", "-q"]))
    assert f"configuración inválida: {variable}" in message


def test_a_kek_rotated_without_a_new_id_stops_every_command(
    cli_env: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings()
    new_kek = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("SALUD_KEK", new_kek)
    monkeypatch.setenv("SALUD_OLD_KEKS", f"{settings.kek_id}:{settings.kek.get_secret_value()}")
    get_settings.cache_clear()
    message = refused(cli_env.invoke(app, ["keys", "rewrap"]))
    assert f"«{settings.kek_id}»" in message


def test_production_refuses_the_development_secrets(
    cli_env: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALUD_ENVIRONMENT", "production")
    monkeypatch.setenv("SALUD_AUDIT_KEY", "una-llave-de-auditoria-propia-de-esta-instalacion")
    get_settings.cache_clear()
    for command in (["audit", "verify", "-q"], ["keys", "rewrap"], ["synth", "persons", "-n", "1"]):
        message = refused(cli_env.invoke(app, command))
        assert "secretos de desarrollo" in message
        assert "SALUD_TOKEN_SECRET, SALUD_KEK" in message
        assert "SALUD_AUDIT_KEY" not in message
    assert cli_env.invoke(app, ["audit", "verify", "--help"]).exit_code == 0  # help still shows
    monkeypatch.setenv("SALUD_TOKEN_SECRET", "un-secreto-de-tokens-propio-de-esta-instalacion")
    monkeypatch.setenv("SALUD_KEK_ID", "prod-2026")
    monkeypatch.setenv("SALUD_KEK", base64.b64encode(os.urandom(32)).decode())
    get_settings.cache_clear()
    verified = cli_env.invoke(app, ["audit", "verify", "-q"])
    assert verified.exit_code == 0, verified.output


@pytest.mark.parametrize("spelling", ["same", "relative", "link"])
def test_rejects_are_never_written_over_the_input(
    cli_env: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    people = tmp_path / "personas.csv"
    content = "curp,first_surname,given_names\nNOESUNACURP,PÉREZ,JUANA\n"
    people.write_text(content, encoding="utf-8")
    units = tmp_path / "horarios.csv"  # a CLUES file that imports (one row rejected)
    units.write_text(
        "CLUES,HORA INICIO,HORA FIN,HORARIO\nHGIMS000010,08:00,16:00,De 08:00 a 16:00\n"
        "ZZ,08:00,16:00,De 08:00 a 16:00\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)

    def other_name(path: Path) -> str:
        if spelling == "relative":
            return f"./{path.name}"
        if spelling == "link":
            link = tmp_path / f"enlace-{path.name}"
            link.symlink_to(path)
            return str(link)
        return str(path)

    message = refused(cli_env.invoke(app, ["persons", "import", str(people), "-q",
                                           "--rejects", other_name(people)]))  # fmt: skip
    assert "--rejects" in message
    assert people.read_text(encoding="utf-8") == content
    before = units.read_bytes()
    message = refused(cli_env.invoke(app, ["facilities", "import", str(units), "--as-of",
                                           "2025-01", "--rejects", other_name(units)]))  # fmt: skip
    assert "--rejects" in message
    assert units.read_bytes() == before
