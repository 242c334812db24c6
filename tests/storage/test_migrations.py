"""The schema is built by the migrations; the models must describe exactly that schema."""

from __future__ import annotations

import os
import sqlite3
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


def _insert(conn: sqlite3.Connection, table: str, **values: object) -> None:
    """A row with the given values, every other NOT NULL column filled by its type."""
    filler = {"INTEGER": 1, "BIGINT": 1, "SMALLINT": 1, "BOOLEAN": 0, "DATE": "2026-01-02",
              "DATETIME": "2026-01-02 10:00:00.000000"}  # fmt: skip
    row = dict(values)
    for _, name, kind, notnull, _, pk in conn.execute(f"PRAGMA table_info({table})"):
        if notnull and not pk and name not in row:
            row[name] = filler.get(kind.split("(")[0].upper(), "x")
    marks = ", ".join("?" for _ in row)
    conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def test_0011_links_the_minors_enrolled_before_it(tmp_path: Path) -> None:
    """Migration 0011 links the adult recorded on an earlier completed enrollment, as
    completion does now: only for a person under 18 on the day of the visit."""
    from salud.storage.migrate import upgrade

    db = tmp_path / "antes.db"
    url = f"sqlite+aiosqlite:///{db}"
    upgrade(url, "0010")
    minor, adult, mother = "AAAA150101MDFXXX01", "BBBB800101HDFXXX02", "CCCC850101MDFXXX03"
    with sqlite3.connect(db) as conn:
        for curp, born in ((minor, "2015-01-01"), (adult, "1980-01-01")):
            _insert(conn, "persons", curp=curp, birth_date=born, sex="H", organ_donor="no",
                    version=1)  # fmt: skip
        unchecked = "DDDD160101HDFXXX04"  # a minor whose companion's ID was excused
        _insert(conn, "persons", curp=unchecked, birth_date="2016-01-01", sex="H",
                organ_donor="no", version=1)  # fmt: skip
        for folio, curp, waived in (("R1", minor, "[]"), ("R2", adult, "[]"),
                                    ("R3", unchecked, '["guardian_id"]')):  # fmt: skip
            _insert(conn, "enrollments", folio=folio, person_curp=curp, status="completed",
                    visit_day="2026-03-04", completed_at="2026-03-04 12:00:00.000000",
                    guardian_curp=mother, guardian_relationship="mother",
                    waived=waived)  # fmt: skip
    upgrade(url, "head")
    with sqlite3.connect(db) as conn:
        links = conn.execute(
            "SELECT minor_curp, guardian_curp, relationship, source, ended_at FROM guardianships"
        ).fetchall()
    assert links == [(minor, mother, "mother", "registro R1", None)]


def test_0018_ends_the_links_0011_made_without_a_checked_id(tmp_path: Path) -> None:
    """An earlier form of 0011's backfill linked adults whose ID had been excused (nobody
    checked who they were): 0018 ends those links, with the reason, and no other."""
    from salud.storage.migrate import upgrade

    db = tmp_path / "sin-id.db"
    url = f"sqlite+aiosqlite:///{db}"
    upgrade(url, "0017")
    mother = "CCCC850101MDFXXX03"
    minors = {"R1": ("AAAA150101MDFXXX01", "[]"), "R2": ("DDDD160101HDFXXX04", '["guardian_id"]')}
    with sqlite3.connect(db) as conn:
        for folio, (curp, waived) in minors.items():
            _insert(conn, "persons", curp=curp, birth_date="2015-01-01", sex="H",
                    organ_donor="no", version=1)  # fmt: skip
            _insert(conn, "enrollments", folio=folio, person_curp=curp, status="completed",
                    visit_day="2026-03-04", guardian_curp=mother,
                    guardian_relationship="mother", waived=waived)  # fmt: skip
            _insert(conn, "guardianships", minor_curp=curp, guardian_curp=mother,
                    relationship="mother", source=f"registro {folio}",
                    linked_by="migracion-0011")  # fmt: skip
    upgrade(url, "head")
    with sqlite3.connect(db) as conn:
        links = dict(conn.execute(
            "SELECT minor_curp, ended_by FROM guardianships"
        ).fetchall())  # fmt: skip
    assert links == {"AAAA150101MDFXXX01": None, "DDDD160101HDFXXX04": "migracion-0018"}


def test_0011_backfill_reads_chunk_after_chunk(tmp_path: Path) -> None:
    """The backfill reads enrollments a chunk at a time by id; with one per chunk, every
    minor is still linked, including after a chunk that held only an adult."""
    import importlib.util

    from alembic.operations import Operations

    from salud.storage.migrate import upgrade

    db = tmp_path / "trozos.db"
    upgrade(f"sqlite+aiosqlite:///{db}", "head")
    people = [
        ("AAAA150101MDFXXX01", "2015-01-01"), ("BBBB800101HDFXXX02", "1980-01-01"),
        ("DDDD160101HDFXXX04", "2016-01-01"), ("EEEE170101MDFXXX05", "2017-01-01"),
    ]  # fmt: skip
    mother = "CCCC850101MDFXXX03"
    with sqlite3.connect(db) as conn:
        for i, (curp, born) in enumerate(people):
            _insert(conn, "persons", curp=curp, birth_date=born, sex="H", organ_donor="no",
                    version=1)  # fmt: skip
            _insert(conn, "enrollments", folio=f"R{i}", person_curp=curp, status="completed",
                    visit_day="2026-03-04", completed_at="2026-03-04 12:00:00.000000",
                    guardian_curp=mother, guardian_relationship="mother",
                    waived="[]")  # fmt: skip
    path = Path(__file__).parents[2] / "migrations" / "versions" / "0011_guardianships.py"
    spec = importlib.util.spec_from_file_location("migration_0011", path)
    assert spec is not None
    assert spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    engine = create_engine(f"sqlite:///{db}", poolclass=pool.NullPool)
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        migration.backfill(chunk=1)
    engine.dispose()
    with sqlite3.connect(db) as conn:
        links = conn.execute("SELECT minor_curp, source FROM guardianships ORDER BY id").fetchall()
    assert links == [(people[0][0], "registro R0"), (people[2][0], "registro R2"),
                     (people[3][0], "registro R3")]  # fmt: skip


def test_0013_widens_the_partition_key_keeping_every_row(tmp_path: Path) -> None:
    """SQLite rebuilds the three tables to widen `person_curp`: every row comes through
    unchanged (the audit chain is sealed over them), and a 64-character key fits after."""
    from salud.storage.migrate import upgrade

    db = tmp_path / "llave.db"
    url = f"sqlite+aiosqlite:///{db}"
    upgrade(url, "0012")
    tables = ("fhir_resources", "fhir_resource_versions", "audit_events")
    with sqlite3.connect(db) as conn:
        for i, table in enumerate(tables[:2]):
            _insert(conn, table, person_curp="AAAA150101MDFXXX01", resource_type="Condition",
                    fhir_id=f"c{i}", version_id=1)  # fmt: skip
        _insert(conn, "audit_events", person_curp="AAAA150101MDFXXX01", seq=1,
                action="records:Condition:read")  # fmt: skip
        before = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
        declared = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_events'")
        assert "VARCHAR(18)" in declared.fetchone()[0]
    upgrade(url, "head")
    with sqlite3.connect(db) as conn:
        after = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
        declared = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_events'")
        assert "VARCHAR(64)" in declared.fetchone()[0]
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(audit_events)")}
    assert after == before
    assert all(rows for rows in after.values())
    assert "ix_audit_events_person_curp" in indexes
