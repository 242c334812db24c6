"""Bulk registration: rejects with line and reason, idempotent re-runs, survival of kill -9."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import sys
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access import audit_chain
from salud.access.models import AuditEvent
from salud.identity import bulk, synth
from salud.identity.models import Affiliation, Person
from tests.factories.persons import person_doc

pytestmark = pytest.mark.db
AUDIT_KEY = b"clave-de-prueba-de-la-bitacora"

ROOT = Path(__file__).resolve().parents[2]


async def _counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as s:
        persons = (await s.execute(select(func.count()).select_from(Person))).scalar_one()
        affs = (await s.execute(select(func.count()).select_from(Affiliation))).scalar_one()
        dup = (
            await s.execute(
                select(func.count()).select_from(
                    select(Person.curp).group_by(Person.curp).having(func.count() > 1).subquery()
                )
            )
        ).scalar_one()
    assert dup == 0
    return persons, affs


def _children(pid: int) -> list[int]:
    """Direct children of a process, from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pids: list[int]) -> list[int]:
    """Those still running (a zombie has exited: only its parent, here init, may reap it)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _csv_row(doc: dict[str, object]) -> dict[str, object]:
    address = doc.get("address") or {}
    assert isinstance(address, dict)
    affs = doc.get("affiliations") or []
    assert isinstance(affs, list)
    return {
        "curp": doc["curp"],
        "given_names": doc["given_names"],
        "first_surname": doc["first_surname"],
        "second_surname": doc.get("second_surname") or "",
        "birth_date": doc.get("birth_date", ""),
        "sex": doc.get("sex", ""),
        "blood_type": doc.get("blood_type", ""),
        "address_state": address.get("state", ""),
        "address_municipality": address.get("municipality", ""),
        "affiliations": ";".join(
            f"{a['institution_code']}|{a.get('member_number', '')}||{a['valid_from']}||active"
            for a in affs
        ),
    }


@pytest.mark.parametrize("workers", [0, 2])
async def test_csv_import_rejects_and_reruns(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workers: int
) -> None:
    good = [person_doc() for _ in range(7)]
    bad_curp = {**person_doc(), "curp": "XXXX000000HXXXXX00"}
    bad_blood = person_doc(blood_type="Z+")
    rows = [*good[:3], bad_curp, *good[3:], bad_blood, good[0]]
    path = tmp_path / "padron.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(_csv_row(good[0])))
        writer.writeheader()
        for doc in rows:
            writer.writerow(_csv_row(doc))
    rejects = io.BytesIO()
    report = await bulk.import_file(
        sessions,
        path,
        actor="test",
        audit_key=AUDIT_KEY,
        rejects_out=rejects,
        chunk_size=3,
        workers=workers,
    )
    assert (report.read, report.inserted, report.rejected) == (10, 7, 3)
    lines = list(csv.reader(io.StringIO(rejects.getvalue().decode())))
    assert lines[0] == ["linea", "curp", "motivo"]
    by_line = {row[0]: row[2] for row in lines[1:]}
    assert sorted(by_line, key=int) == ["5", "10", "11"]  # the header is line 1
    assert by_line["5"].startswith("curp:")
    assert by_line["10"].startswith("blood_type:")
    assert "repetida en la línea 2" in by_line["11"]
    assert await _counts(sessions) == (7, 7)
    # Each person registered is one audit entry, in the chunk's transaction, on the chain.
    assert sorted(await _imported(sessions)) == sorted(d["curp"] for d in good)
    assert (await audit_chain.verify(sessions, AUDIT_KEY)).ok

    again = await bulk.import_file(
        sessions, path, actor="test", audit_key=AUDIT_KEY, workers=workers
    )
    assert (again.inserted, again.already_present, again.rejected) == (0, 7, 3)
    assert await _counts(sessions) == (7, 7)
    assert len(await _imported(sessions)) == 7  # nothing registered, nothing recorded


async def _imported(sessions: async_sessionmaker[AsyncSession], actor: str = "test") -> list[str]:
    stmt = select(AuditEvent.person_curp, AuditEvent.actor).where(
        AuditEvent.action == "identity:person:import"
    )
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    assert {who for _, who in rows} <= {actor}
    return [curp for curp, _ in rows]


async def test_ndjson_reports_unreadable_lines(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = tmp_path / "padron.ndjson"
    path.write_bytes(
        orjson.dumps(person_doc()) + b"\n{roto\n[1,2]\n\n" + orjson.dumps(person_doc()) + b"\n"
    )
    report = await bulk.import_file(sessions, path, actor="test", audit_key=AUDIT_KEY)
    assert (report.read, report.inserted, report.rejected) == (4, 2, 2)
    assert [r.line for r in report.rejects] == [2, 3]
    assert "JSON" in report.rejects[0].reason


async def test_import_killed_midway_resumes_without_loss_or_doubles(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, database_url: str, shared_data: Path
) -> None:
    total = 40_000
    path = tmp_path / "synth.ndjson"
    with path.open("wb") as out:
        synth.write_ndjson(synth.generate_persons(total, 7, shared_data), out)
    expected_affs = sum(
        len(orjson.loads(line)["affiliations"]) for line in path.read_bytes().splitlines()
    )
    env = {
        **os.environ,
        "SALUD_DATABASE_URL": database_url,
        "SALUD_SHARED_DATA_DIR": str(shared_data),
    }
    cmd = [
        sys.executable,
        "-m",
        "salud.cli.main",
        "persons",
        "import",
        str(path),
        "--chunk",
        "500",
        "-q",
    ]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    landed = 0
    while time.monotonic() < deadline:
        landed, _ = await _counts(sessions)
        if landed >= 2000 or proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    assert proc.returncode is None, "the import ended before it could be killed: use a larger file"
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    # Its worker processes (PostgreSQL imports in parallel) do not outlive it.
    for _ in range(100):
        if not _alive(workers):
            break
        await asyncio.sleep(0.1)
    assert not _alive(workers)
    partial, _ = await _counts(sessions)
    assert 0 < partial < total

    done = await asyncio.create_subprocess_exec(
        *cmd, env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(done.communicate(), timeout=300)
    assert done.returncode == 0, stderr.decode()
    assert await _counts(sessions) == (total, expected_affs)
    # One audit entry per person, none lost with the killed chunks and none twice.
    recorded = await _imported(sessions, f"importacion:{path.name}")
    assert len(recorded) == len(set(recorded)) == total


@pytest.mark.postgresql
async def test_conflict_proof_fallback_skips_curps_already_present(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The path a chunk takes when a concurrent import registered one of its CURPs between
    the look-up and the COPY: the CURPs present are skipped, the rest land, in the chunk's
    transaction."""
    from salud.identity import repository
    from salud.identity.schemas import PersonCreate
    from salud.identity.service import person_values
    from salud.kit.clock import utcnow

    docs = [person_doc() for _ in range(3)]
    now = utcnow()
    rows = [person_values(PersonCreate.model_validate(d), "test", now) for d in docs]
    async with sessions() as session, session.begin():
        await repository.bulk_insert(session, rows[:1], {})
    async with sessions() as session, session.begin():
        raw = await repository._asyncpg(session)
        inserted = await repository._stage_persons_postgresql(raw, rows)
    assert sorted(curp for _, curp in inserted) == sorted(d["curp"] for d in docs[1:])
    assert await _counts(sessions) == (3, 0)
