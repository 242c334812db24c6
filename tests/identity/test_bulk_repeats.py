"""A bulk import judges repeated CURPs on what validated, and never ends in a traceback: a
padded CURP is refused (not trimmed into a repeat), a valid line after a refused one with
its CURP registers, and a row the database refuses is a reject of its own."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from salud.access import audit_chain
from salud.access.models import AuditEvent
from salud.identity import bulk
from salud.identity.models import Person
from tests.factories.persons import person_doc
from tests.identity.test_registry_input_rules import long_folded_name_doc

pytestmark = pytest.mark.db
AUDIT_KEY = b"clave-de-prueba-de-la-bitacora"


def _ndjson(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


async def _registered(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return sorted(await session.scalars(select(Person.curp)))


async def _imported(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    stmt = select(AuditEvent.person_curp).where(AuditEvent.action == "identity:person:import")
    async with sessions() as session:
        return sorted(c for c in await session.scalars(stmt) if c)


@pytest.mark.parametrize("workers", [0, 2])
async def test_a_padded_curp_is_a_reject_not_a_repeat_nor_a_crash(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workers: int
) -> None:
    """ "X" and "X " both passed the raw-text check; the model trimmed the second, so SQLite
    raised IntegrityError (a traceback) and PostgreSQL counted it as already registered."""
    other, doc = person_doc(), person_doc()
    path = _ndjson(tmp_path / "p.ndjson", [other, doc, {**doc, "curp": doc["curp"] + " "}])
    rejects = io.BytesIO()
    report = await bulk.import_file(sessions, path, actor="test", audit_key=AUDIT_KEY,
                                    rejects_out=rejects, workers=workers)  # fmt: skip
    assert (report.read, report.inserted, report.already_present, report.rejected) == (3, 2, 0, 1)
    assert [(r.line, r.reason) for r in report.rejects] == [(3, "curp: la CURP no lleva espacios")]
    assert await _registered(sessions) == sorted([other["curp"], doc["curp"]])
    assert "la CURP no lleva espacios" in rejects.getvalue().decode()


async def test_a_padded_curp_in_a_csv_is_refused_too(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    doc = person_doc()
    path = tmp_path / "p.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["curp", "given_names", "first_surname", "second_surname"])
        writer.writerow([f" {doc['curp']}", doc["given_names"], doc["first_surname"],
                         doc["second_surname"]])  # fmt: skip
    report = await bulk.import_file(sessions, path, actor="test", audit_key=AUDIT_KEY)
    assert (report.inserted, report.rejected) == (0, 1)
    assert report.rejects[0].reason == "curp: la CURP no lleva espacios"


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("chunk_size", [1, 100])
async def test_a_line_is_a_repeat_only_of_one_that_validated(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workers: int, chunk_size: int
) -> None:
    """The first line with a CURP is refused (its blood type): the next one with that CURP
    registers, in the same chunk or in another, and a third is a repeat of the second."""
    doc, filler = person_doc(), person_doc()
    lines = [{**doc, "blood_type": "Z+"}, filler, doc, {**doc, "phone": "+527711234567"}]
    path = _ndjson(tmp_path / "p.ndjson", lines)
    report = await bulk.import_file(sessions, path, actor="test", audit_key=AUDIT_KEY,
                                    chunk_size=chunk_size, workers=workers)  # fmt: skip
    assert (report.read, report.inserted, report.rejected) == (4, 2, 2)
    reasons = {r.line: r.reason for r in report.rejects}
    assert reasons[1].startswith("blood_type:")
    assert reasons[4] == "curp: repetida en la línea 3 de este archivo"
    assert await _registered(sessions) == sorted([doc["curp"], filler["curp"]])
    async with sessions() as session:
        phone = await session.scalar(select(Person.phone).where(Person.curp == doc["curp"]))
    assert phone is None  # line 3's, not line 4's

    again = await bulk.import_file(sessions, path, actor="test", audit_key=AUDIT_KEY,
                                   chunk_size=chunk_size, workers=workers)  # fmt: skip
    assert (again.inserted, again.already_present, again.rejected) == (0, 2, 2)


async def test_a_name_too_long_once_folded_is_a_reject(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """On PostgreSQL the COPY failed (22001) and ended the import; now the model refuses it."""
    good = person_doc()
    path = _ndjson(tmp_path / "p.ndjson", [good, long_folded_name_doc()])
    report = await bulk.import_file(sessions, path, actor="test", audit_key=AUDIT_KEY)
    assert (report.inserted, report.rejected) == (1, 1)
    assert report.rejects[0].line == 2
    assert report.rejects[0].reason.startswith("given_names: normalizado para la búsqueda")


@pytest.fixture
def refusing(engine: AsyncEngine) -> Iterator[tuple[list[str], list[str]]]:
    """SQL that makes the database refuse one person (a check violation raised by a trigger,
    the kind of refusal no model check foresaw), and the SQL that undoes it."""
    if engine.dialect.name == "sqlite":
        yield (
            ["CREATE TRIGGER refuse_person BEFORE INSERT ON persons "
             "WHEN NEW.phone = '+520000000000' "
             "BEGIN SELECT RAISE(ABORT, 'rechazada por la prueba'); END"],
            ["DROP TRIGGER refuse_person"],
        )  # fmt: skip
        return
    yield (
        [
            "CREATE FUNCTION refuse_person() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.phone = '+520000000000' THEN RAISE EXCEPTION 'rechazada por la prueba' "
            "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_person BEFORE INSERT ON persons "
            "FOR EACH ROW EXECUTE FUNCTION refuse_person()",
        ],
        ["DROP TRIGGER refuse_person ON persons", "DROP FUNCTION refuse_person()"],
    )


@pytest.mark.parametrize("workers", [0, 2])
async def test_a_row_the_database_refuses_is_a_reject_and_the_rest_land(
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    tmp_path: Path,
    refusing: tuple[list[str], list[str]],
    workers: int,
) -> None:
    docs = [person_doc() for _ in range(4)]
    docs[2]["phone"] = "+520000000000"
    path = _ndjson(tmp_path / "p.ndjson", docs)
    create, drop = refusing
    async with engine.begin() as conn:
        for statement in create:
            await conn.exec_driver_sql(statement)
    try:
        report = await bulk.import_file(sessions, path, actor="test", audit_key=AUDIT_KEY,
                                        workers=workers)  # fmt: skip
    finally:
        async with engine.begin() as conn:
            for statement in drop:
                await conn.exec_driver_sql(statement)
    assert (report.read, report.inserted, report.rejected) == (4, 3, 1)
    [refused] = report.rejects
    assert (refused.line, refused.curp) == (3, docs[2]["curp"])
    assert refused.reason.startswith("la base de datos rechazó la fila")
    assert "rechazada por la prueba" in refused.reason
    landed = sorted(d["curp"] for i, d in enumerate(docs) if i != 2)
    assert await _registered(sessions) == landed
    assert await _imported(sessions) == landed  # one entry each, in the chunk's transaction
    assert (await audit_chain.verify(sessions, AUDIT_KEY)).ok
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Person)) == 3
