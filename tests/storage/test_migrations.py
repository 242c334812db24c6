"""The schema is built by the migrations; the models must describe exactly that schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from salud.schema import metadata

pytestmark = pytest.mark.db


def _sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    engine = create_engine(_sync_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_migrations_reached_head(database_url: str) -> None:
    from alembic.script import ScriptDirectory

    from salud.storage.migrate import alembic_config

    engine = create_engine(_sync_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current == head


def test_cli_upgrade_creates_the_sqlite_folder(tmp_path: Path) -> None:
    """`make run` on a fresh checkout: var/ does not exist yet."""
    db = tmp_path / "not" / "yet" / "salud.db"
    env = {**os.environ, "SALUD_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    done = subprocess.run(
        [sys.executable, "-m", "salud.cli.main", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert db.is_file()
