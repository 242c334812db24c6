"""The audit trail: group commit, one contiguous chain, and tampering named at the first bad
entry. Every tamper is done the way an intruder with database access would: plain SQL."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import delete, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from salud.access.audit import (
    AuditEntry,
    AuditLog,
    AuditUnavailable,
    _append_in_session,
    _row_of,
    events,
    events_for_person,
)
from salud.access.audit_chain import AUDIT_TABLE, GENESIS, canonical_bytes, chain_of, verify
from salud.access.audit_tx import record_in_transaction
from salud.cli import audit as cli_audit
from salud.cli.audit import app as audit_cli
from salud.config import Settings, get_settings
from salud.errors import InvalidInput
from salud.kit.clock import utcnow
from salud.storage.engine import create_engine, session_factory

pytestmark = pytest.mark.db

KEY = b"clave-de-pruebas-de-la-bitacora-de-auditoria"
OTHER_KEY = b"clave-de-un-intruso"
CURP = "GODE561231HDFRRN04"


def entry(i: int, **changes: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "actor": f"operador{i % 5}",
        "role": "registration_operator",
        "action": "identity:person:read",
        "subject_type": "person",
        "institution_code": 12,
        "clues": "DFSSA001234",
        "person_curp": CURP,
        "subject_id": str(i),
        "purpose": "atencion",
        "detail": {"i": i, "campos": ["nombre", "domicilio"]},
    }
    fields.update(changes)
    return AuditEntry(**fields)


@pytest.fixture
async def log(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AuditLog]:
    audit_log = AuditLog(sessions, KEY)
    await audit_log.start()
    yield audit_log
    await audit_log.close()


async def filled(log: AuditLog, n: int) -> None:
    assert await log.record_many([entry(i) for i in range(n)]) == list(range(1, n + 1))


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(select(AUDIT_TABLE).order_by(AUDIT_TABLE.c.seq))
        return [dict(r) for r in result.mappings()]


async def tamper(sessions: async_sessionmaker[AsyncSession], seq: int, **values: Any) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(AUDIT_TABLE).where(AUDIT_TABLE.c.seq == seq).values(values))


# --- the chain ---------------------------------------------------------------------------


def test_canonical_bytes_are_sorted_compact_json_and_the_chain_depends_on_everything() -> None:
    from datetime import UTC, datetime

    event: dict[str, Any] = {
        "seq": 1,
        "at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "actor": "ana",
        "role": "clinician",
        "institution_code": None,
        "clues": None,
        "action": "identity:person:read",
        "subject_type": "person",
        "person_curp": None,
        "subject_id": None,
        "purpose": None,
        "reason": None,
        "outcome": "success",
        "detail": {"b": 1.0, "a": "Peña"},
    }
    assert canonical_bytes(event) == (
        b'{"action":"identity:person:read","actor":"ana","at":"2026-01-02T03:04:05.000006+00:00",'
        b'"clues":null,"detail":{"a":"Pe\xc3\xb1a","b":1},"institution_code":null,'
        b'"outcome":"success","person_curp":null,"purpose":null,"reason":null,'
        b'"role":"clinician","seq":1,"subject_id":null,"subject_type":"person"}'
    )
    first = chain_of(KEY, GENESIS, event)
    assert len(first) == 64
    assert chain_of(KEY, GENESIS, event) == first
    assert chain_of(OTHER_KEY, GENESIS, event) != first
    assert chain_of(KEY, first, event) != first
    assert chain_of(KEY, GENESIS, {**event, "seq": 2}) != first


async def test_an_empty_log_is_intact(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert (await verify(sessions, KEY)).ok


async def test_concurrent_records_get_contiguous_committed_seqs(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    seqs = await asyncio.gather(*(log.record(entry(i)) for i in range(300)))
    assert sorted(seqs) == list(range(1, 301))
    stored = await rows(sessions)  # another session sees them: they are committed
    assert [r["seq"] for r in stored] == list(range(1, 301))
    by_seq = {r["seq"]: r for r in stored}
    assert all(by_seq[s]["subject_id"] == str(i) for i, s in enumerate(seqs))
    seen: list[int] = []
    result = await verify(sessions, KEY, progress=seen.append)
    assert (result.ok, result.checked, result.first_bad_seq, result.problem) == (
        True,
        300,
        None,
        None,
    )
    assert seen[-1] == 300


async def test_values_survive_the_round_trip_through_the_database(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tricky = {
        "z": [1.0, 0.1, 1e20, -0.0, 1.5e-10, 2**62, True, None, "Peña ñ 漢字 😷"],
        "a": {"y": {"b": 2, "a": 1}, "x": []},
        "": "clave vacía",
    }
    await log.record_many(
        [
            AuditEntry("a", "citizen", "identity:person:read", "person"),  # every None
            entry(1, detail=tricky, reason="urgencia: paciente inconsciente", outcome="denied"),
            entry(2, detail={}, institution_code=-1, outcome="not_found"),
            entry(3, detail=None, clues=None, outcome="error"),
        ]
    )
    assert (await verify(sessions, KEY)).ok
    stored = await rows(sessions)
    assert stored[0]["detail"] is None
    assert stored[1]["detail"]["z"][5] == 2**62
    assert stored[1]["at"].tzinfo is not None


async def test_bad_entries_are_refused_alone(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    bad = [
        entry(1, person_curp="X" * 65),  # wider than the partition key
        entry(2, detail={"n": float("nan")}),
        entry(3, detail={"s": {1, 2}}),
        entry(4, detail={1: "clave numérica"}),
        entry(5, actor=""),
        entry(6, outcome="quizas"),
        entry(7, reason="con \x00 nulo"),
        entry(8, institution_code=70000),
        entry(9, detail={"n": 2**70}),
    ]
    answers = await asyncio.gather(
        log.record(entry(0)),
        *(log.record(b) for b in bad),
        log.record(entry(10)),
        return_exceptions=True,
    )
    assert answers[0] == 1
    assert answers[-1] == 2
    errors = answers[1:-1]
    assert all(isinstance(e, InvalidInput) for e in errors), errors
    assert [e.problems[0].field for e in errors if isinstance(e, InvalidInput)] == [
        "person_curp",
        "detail.n",
        "detail.s",
        "detail",
        "actor",
        "outcome",
        "reason",
        "institution_code",
        "detail.n",
    ]
    assert len(await rows(sessions)) == 2


# --- tampering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "intruso"),
        ("outcome", "denied"),
        ("person_curp", None),
        ("institution_code", 13),
        ("detail", {"i": 999, "campos": ["nombre", "domicilio"]}),
        ("at", "shift"),
        ("chain", "0" * 64),
    ],
)
async def test_an_edited_entry_is_named(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession], column: str, value: Any
) -> None:
    await filled(log, 30)
    if value == "shift":
        value = (await rows(sessions))[16]["at"] + timedelta(microseconds=1)
    await tamper(sessions, 17, **{column: value})
    result = await verify(sessions, KEY)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 17, 16)
    assert result.problem is not None
    assert "la entrada 17 fue modificada" in result.problem


async def test_a_removed_entry_is_named(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await filled(log, 20)
    async with sessions() as session, session.begin():
        await session.execute(delete(AUDIT_TABLE).where(AUDIT_TABLE.c.seq == 9))
    result = await verify(sessions, KEY)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 9, 8)  # the missing one
    assert result.problem == "falta la entrada 9 (se encontró la 10)"


async def test_entries_removed_from_the_end_are_caught_by_the_anchor(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A log cut short at its end is still a valid chain; the anchor kept from an earlier
    verification (its last entry's seq and chain) is what shows the cut."""
    await filled(log, 20)
    earlier = await verify(sessions, KEY)
    assert earlier.ok
    assert earlier.last_chain is not None
    anchor = (earlier.checked, earlier.last_chain)
    assert await log.record_many([entry(i) for i in range(5)]) == [21, 22, 23, 24, 25]
    assert (await verify(sessions, KEY, anchor=anchor)).ok  # grown since: fine
    async with sessions() as session, session.begin():
        await session.execute(delete(AUDIT_TABLE).where(AUDIT_TABLE.c.seq > 17))
    assert (await verify(sessions, KEY)).ok  # without the anchor the cut goes unseen
    cut = await verify(sessions, KEY, anchor=anchor)
    assert (cut.ok, cut.first_bad_seq, cut.checked) == (False, 18, 17)
    assert (
        cut.problem == "faltan entradas al final: la bitácora termina en la 17 y el ancla es la 20"
    )
    wrong = await verify(sessions, KEY, anchor=(17, "0" * 64))
    assert (wrong.ok, wrong.first_bad_seq) == (False, 17)


async def test_a_missing_first_entry_is_named(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await filled(log, 3)
    async with sessions() as session, session.begin():
        await session.execute(delete(AUDIT_TABLE).where(AUDIT_TABLE.c.seq == 1))
    result = await verify(sessions, KEY)
    assert (result.first_bad_seq, result.problem) == (1, "falta la entrada 1 (se encontró la 2)")


async def test_two_swapped_entries_are_named(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await filled(log, 20)
    stored = {r["seq"]: r for r in await rows(sessions)}
    content = {s: {k: v for k, v in stored[s].items() if k != "seq"} for s in (6, 12)}
    await tamper(sessions, 6, **content[12])
    await tamper(sessions, 12, **content[6])
    result = await verify(sessions, KEY)
    assert (result.ok, result.first_bad_seq) == (False, 6)


async def test_an_entry_appended_without_the_key_is_named(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await filled(log, 10)
    forger = AuditLog(sessions, OTHER_KEY)
    await forger.start()
    try:
        assert await forger.record(entry(99, actor="intruso")) == 11
    finally:
        await forger.close()
    result = await verify(sessions, KEY)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 11, 10)


async def test_a_chain_rebuilt_without_the_key_fails_from_the_start(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await filled(log, 12)
    await tamper(sessions, 5, actor="intruso")
    previous = GENESIS
    for row in await rows(sessions):  # the intruder reseals every entry with a key of theirs
        previous = chain_of(OTHER_KEY, previous, row)
        await tamper(sessions, row["seq"], chain=previous)
    assert (await verify(sessions, OTHER_KEY)).ok  # the reseal itself is consistent...
    result = await verify(sessions, KEY)  # ...but not under the real key
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 1, 0)


@pytest.mark.sqlite  # only SQLite lets a date column hold text that is no date
async def test_an_unreadable_entry_is_named(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await filled(log, 8)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE audit_events SET at = 'ayer' WHERE seq = 4")
    result = await verify(sessions, KEY)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem == "la entrada 4 tiene datos ilegibles"


@pytest.mark.sqlite  # PostgreSQL's jsonb refuses or normalizes these edits itself
async def test_edits_the_json_reader_forgives_are_named(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    """A repeated key (a reader keeps the last one; SQLite's json_extract the first), NaN
    and 1e400 where null was: each would read back as the sealed entry did."""
    await log.record_many([entry(i, detail={"n": 4, "x": None}) for i in range(6)])
    for seq, text in ((2, '{"n":999,"n":4,"x":null}'), (3, '{"n":4,"x":NaN}'),
                      (4, '{"n":4,"x":1e400}')):  # fmt: skip
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "UPDATE audit_events SET detail = ? WHERE seq = ?", (text, seq)
            )
        result = await verify(sessions, KEY)
        assert (result.ok, result.first_bad_seq) == (False, seq), text
        async with engine.begin() as conn:  # put it back for the next case
            await conn.exec_driver_sql(
                "UPDATE audit_events SET detail = ? WHERE seq = ?", ('{"n":4,"x":null}', seq)
            )
    assert (await verify(sessions, KEY)).ok


# --- concurrency and lifecycle -----------------------------------------------------------


async def test_two_writers_in_two_pools_keep_one_chain(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    # A second engine is a second pool, as a second process would have. Small batches make
    # the two interleave many times.
    other_engine = create_engine(database_url)
    logs = [
        AuditLog(sessions, KEY, max_batch=7, max_delay=0.0005),
        AuditLog(session_factory(other_engine), KEY, max_batch=7, max_delay=0.0005),
    ]
    try:
        for audit_log in logs:
            await audit_log.start()
        seqs = await asyncio.gather(
            *(logs[i % 2].record(entry(i)) for i in range(300)),
        )
        for audit_log in logs:
            await audit_log.close()
    finally:
        await other_engine.dispose()
    assert sorted(seqs) == list(range(1, 301))
    result = await verify(sessions, KEY)
    assert (result.ok, result.checked) == (True, 300)


async def test_the_plain_session_path_takes_the_same_lock(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # On PostgreSQL the writer appends through asyncpg; sessions not bound to an engine take
    # the SQLAlchemy path. Both must serialize on the same lock.
    now = utcnow()
    answers = await asyncio.gather(
        *(log.record(entry(i)) for i in range(100)),
        *(
            _append_in_session(sessions, [_row_of(entry(i), now) for i in range(3)], KEY)
            for _ in range(10)
        ),
    )
    assert len(set(answers)) == 110
    result = await verify(sessions, KEY)
    assert (result.ok, result.checked) == (True, 130)


async def test_appends_inside_transactions_that_write_nothing_else_keep_one_chain(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A transaction whose first write is its audit entry (a Bundle of reads) must not read
    the same last entry as another one: on SQLite the write lock comes before that read."""

    async def append(i: int) -> int:
        async with sessions() as session, session.begin():
            return await record_in_transaction(session, KEY, [entry(i), entry(i + 100)])

    firsts = await asyncio.gather(*(append(i) for i in range(30)))
    assert sorted(firsts) == list(range(1, 61, 2))
    result = await verify(sessions, KEY)
    assert (result.ok, result.checked) == (True, 60)


async def test_close_writes_what_is_pending_at_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    audit_log = AuditLog(sessions, KEY, max_delay=30)  # would hold a batch open for 30 s
    await audit_log.start()
    waiting = [asyncio.create_task(audit_log.record(entry(i))) for i in range(40)]
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in waiting)
    started = time.monotonic()
    await asyncio.wait_for(audit_log.close(), timeout=10)
    assert time.monotonic() - started < 5
    assert sorted(task.result() for task in waiting) == list(range(1, 41))
    assert len(await rows(sessions)) == 40
    with pytest.raises(RuntimeError, match="no está en marcha"):
        await audit_log.record(entry(0))


async def test_a_cancelled_caller_does_not_stop_the_writer(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    gone = asyncio.create_task(log.record(entry(1)))
    await asyncio.sleep(0)
    gone.cancel()
    assert await log.record(entry(2)) >= 1
    assert (await verify(sessions, KEY)).ok


@pytest.fixture
async def unreachable(tmp_path: Path, database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose audit table cannot be reached: an empty SQLite file, or a PostgreSQL
    database that does not exist."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        url = url.set(database=str(tmp_path / "sin-tablas.db"))
    else:
        url = url.set(database=f"salud_no_existe_{uuid.uuid4().hex[:8]}")
    broken = create_engine(url.render_as_string(hide_password=False))
    yield broken
    await broken.dispose()


async def test_a_write_that_fails_fails_every_waiter(unreachable: AsyncEngine) -> None:
    audit_log = AuditLog(session_factory(unreachable), KEY)
    await audit_log.start()
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(audit_log.record(entry(i)) for i in range(5)), return_exceptions=True),
            timeout=20,
        )
    finally:
        await audit_log.close()
    failures = [a for a in answers if isinstance(a, AuditUnavailable)]
    assert len(failures) == 5, answers
    assert failures[0].status == 503


@pytest.fixture
def refusing_trigger(engine: AsyncEngine) -> tuple[list[str], list[str]]:
    """SQL that makes every insert into the audit table fail inside the transaction (after
    the lock and the read), and the SQL that undoes it."""
    if engine.dialect.name == "sqlite":
        return (
            [
                "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'rechazado por la prueba'); END"
            ],
            ["DROP TRIGGER audit_refuse"],
        )
    return (
        [
            "CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'rechazado por la prueba'; END $$",
            "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
        ],
        ["DROP TRIGGER audit_refuse ON audit_events", "DROP FUNCTION audit_refuse()"],
    )


async def test_a_failed_batch_leaves_no_trace_and_the_writer_goes_on(
    log: AuditLog,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    refusing_trigger: tuple[list[str], list[str]],
) -> None:
    create, drop = refusing_trigger
    await filled(log, 5)
    async with engine.begin() as conn:
        for statement in create:
            await conn.exec_driver_sql(statement)
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(log.record(entry(i)) for i in range(4)), return_exceptions=True),
            timeout=20,
        )
        failures = [a for a in answers if isinstance(a, AuditUnavailable)]
        assert len(failures) == 4, answers
        assert "rechazado por la prueba" in str(failures[0].__cause__)
    finally:
        async with engine.begin() as conn:
            for statement in drop:
                await conn.exec_driver_sql(statement)
    assert await log.record(entry(6)) == 6  # no gap where the failed batch was
    assert (await verify(sessions, KEY)).ok


# --- reading -----------------------------------------------------------------------------


async def test_who_accessed_a_person_newest_first(
    log: AuditLog, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await filled(log, 10)
    await log.record(entry(10, person_curp="PEMA800101MDFRRR09", actor="otra"))
    async with sessions() as session:
        mine = await events_for_person(session, CURP, limit=4)
        assert [e.seq for e in mine] == [10, 9, 8, 7]
        older = await events_for_person(session, CURP, limit=4, before_seq=7)
        assert [e.seq for e in older] == [6, 5, 4, 3]
        assert [e.seq for e in await events(session, limit=2)] == [11, 10]
        by_actor = await events(session, actor="operador1")
        assert [e.seq for e in by_actor] == [7, 2]
        assert len(await events(session, action="identity:person:read")) == 11
        assert await events(session, action="identity:person:update") == []


# --- the command line --------------------------------------------------------------------


@pytest.fixture
def cli(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    monkeypatch.setenv("SALUD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SALUD_AUDIT_KEY", KEY.decode())
    monkeypatch.setattr(cli_audit, "out", Console(width=160))  # a wide terminal: no folding
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


async def _in_own_loop(database_url: str, fill: int = 0, tamper_seq: int | None = None) -> None:
    """The CLI runs its own event loop; so does this set-up, outside the tests' loop."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    audit_log = AuditLog(sessions, KEY)
    await audit_log.start()
    try:
        if fill:
            await filled(audit_log, fill)
        if tamper_seq is not None:
            await tamper(sessions, tamper_seq, actor="intruso")
    finally:
        await audit_log.close()
        await engine.dispose()


def test_cli_verify_says_intact_then_names_the_tampered_entry(
    cli: CliRunner, database_url: str
) -> None:
    asyncio.run(_in_own_loop(database_url, fill=25))
    intact = cli.invoke(audit_cli, ["verify"])
    assert intact.exit_code == 0, intact.output
    assert "íntegra" in intact.output
    assert "25 entradas" in intact.output

    said = re.search(r"Ancla: (25:[0-9a-f]{64})", intact.output)
    assert said is not None, intact.output
    anchored = cli.invoke(audit_cli, ["verify", "--quiet", "--anchor", said.group(1)])
    assert anchored.exit_code == 0, anchored.output
    beyond = cli.invoke(audit_cli, ["verify", "--quiet", "--anchor", "26:" + "a" * 64])
    assert beyond.exit_code == 1
    assert "faltan entradas al final" in beyond.output
    assert cli.invoke(audit_cli, ["verify", "--anchor", "26"]).exit_code == 2

    asyncio.run(_in_own_loop(database_url, tamper_seq=13))
    broken = cli.invoke(audit_cli, ["verify", "--quiet"])
    assert broken.exit_code == 1, broken.output
    assert "la entrada 13 fue modificada" in broken.output
    assert "intruso" in broken.output  # the entry as it is now stored


def test_cli_show_lists_who_accessed_a_person(cli: CliRunner, database_url: str) -> None:
    asyncio.run(_in_own_loop(database_url, fill=3))
    shown = cli.invoke(audit_cli, ["show", "--curp", CURP.lower(), "--limit", "2"])
    assert shown.exit_code == 0, shown.output
    assert "operador2" in shown.output
    assert "operador1" in shown.output
    assert "operador0" not in shown.output
    assert "--before 2" in shown.output
    nobody = cli.invoke(audit_cli, ["show", "--curp", "PEMA800101MDFRRR09"])
    assert nobody.exit_code == 0
    assert "No hay accesos" in nobody.output
    bad = cli.invoke(audit_cli, ["show", "--curp", "corta"])
    assert bad.exit_code == 2
    assert "18 letras" in bad.output
