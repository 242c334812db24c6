"""Bulk NDJSON import: each line checked as the API checks a write, stored as the API stores
it (versions, index rows, the person, sensitivity, meta), rejects with line and reason,
chunked transactions, idempotent by id, audited; `--lenient` reports references to nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from salud.access.context import Caller
from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.cli.main import app as cli
from salud.records import bulk
from tests.conftest import TokenFor, backend
from tests.records.test_fhir_api import (
    IMSS_UNIT,
    ISSSTE_UNIT,
    cared_for,
    clinician,
    condition,
    outcome,
    patient,
)

pytestmark = pytest.mark.db
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


def importer(app: Any, institution: int | None = 2, clues: str | None = IMSS_UNIT) -> Caller:
    principal = Principal(
        "cli:prueba.ndjson", "importacion:prueba.ndjson", Role.CLIENT, institution, clues,
        scopes=frozenset({"system/*.read", "system/*.write"}),
    )  # fmt: skip
    return Caller(principal, app.state.audit, purpose="importacion")


def encounter(curp: str, fhir_id: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": fhir_id, "status": "finished", "class": AMB,
            "subject": {"reference": f"Patient/{curp}"}}  # fmt: skip


def heart_rate(curp: str, fhir_id: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": fhir_id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{curp}"},
            "valueQuantity": {"value": 72, "unit": "/min"}, **extra}  # fmt: skip


def ndjson(*lines: dict[str, Any] | bytes) -> list[tuple[int, bytes]]:
    return [
        (n, line if isinstance(line, bytes) else orjson.dumps(line))
        for n, line in enumerate(lines, 1)
    ]


def _without_meta(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "meta"}


async def test_bulk_import_checks_and_stores_like_the_api(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    curp, other = await patient(client), await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    for person in (curp, other):
        for doctor in (imss, issste):
            await cared_for(client, person, doctor)
    dx1 = {**condition(curp), "id": "dx-1", "encounter": {"reference": "Encounter/enc-1"}}
    lines = ndjson(
        encounter(curp, "enc-1"),  # 1
        dx1,  # 2: points at line 1, same chunk
        b"{no es json",  # 3
        {**condition(curp, onsetDateTime="ayer"), "id": "dx-2"},  # 4
        {**condition(curp, "Q99.99"), "id": "dx-3"},  # 5: not in the DGIS catalog
        {**condition(curp), "id": "dx-4", "encounter": {"reference": "Encounter/nada"}},  # 6
        heart_rate(curp, "obs-2", focus=[{"reference": "Condition/dx-4"}]),  # 7: points at 6
        {"resourceType": "Patient", "id": curp},  # 8: the registry's person
        {**condition(curp, "F32.9"), "id": "dx-5"},  # 9: mental health
        condition(other, "I10"),  # 10: no id, the server gives one
        heart_rate(curp, "obs-1", encounter={"reference": "Encounter/enc-1"}),  # 11
        heart_rate(curp, "obs-3", encounter={"reference": "Encounter/enc-9"}),  # 12: later
        encounter(curp, "enc-9"),  # 13
        {"resourceType": "Patient", "id": "externo-1", "gender": "female"},  # 14
        heart_rate("externo-1", "obs-4"),  # 15
    )
    rejects = bytearray()

    class Sink:
        def write(self, data: bytes) -> int:
            rejects.extend(data)
            return len(data)

    report = await bulk.import_lines(
        app.state.sessions, importer(app), lines, source="prueba.ndjson", chunk_size=2,
        rejects_out=Sink(),  # type: ignore[arg-type]
    )  # fmt: skip
    assert (report.read, report.created, report.rejected) == (15, 8, 7)
    written = [orjson.loads(line) for line in bytes(rejects).splitlines()]
    reasons = {r["linea"]: r["motivo"] for r in written}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 12]
    assert "JSON mal formado" in reasons[3]
    assert reasons[4].startswith("Condition.onsetDateTime")
    assert "CIE-10" in reasons[5]
    assert "Encounter/nada" in reasons[6]
    assert "Condition/dx-4" in reasons[7]  # its target was refused in the same chunk
    assert "padrón" in reasons[8]
    assert "Encounter/enc-9" in reasons[12]  # a target must come first
    assert {r["recurso"] for r in written if r["linea"] == 6} == {"Condition/dx-4"}

    # Stored as the API stores: meta says who wrote it; it reads back as it came.
    read = (await client.get("/fhir/Condition/dx-1", headers=imss)).json()
    assert _without_meta(read) == dx1
    assert read["meta"]["versionId"] == "1"
    assert read["meta"]["source"] == f"urn:clues:{IMSS_UNIT}"
    assert read["meta"]["tag"][0]["code"] == "2"
    # Indexed: searches find the imported resources; the person partitions them.
    found = await client.get(f"/fhir/Condition?patient={curp}&code=E11.9", headers=imss)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["dx-1"]
    by_encounter = await client.get(
        f"/fhir/Observation?patient={curp}&encounter=Encounter/enc-1", headers=imss
    )
    assert [e["resource"]["id"] for e in by_encounter.json()["entry"]] == ["obs-1"]
    theirs = (await client.get(f"/fhir/Condition?patient={other}", headers=imss)).json()
    assert [e["resource"]["code"]["coding"][0]["code"] for e in theirs["entry"]] == ["I10"]
    # Classified: the person restricts mental health; ISSSTE no longer sees it, IMSS does.
    me = token_for(Role.CITIZEN, curp=curp)
    await client.put(f"/api/v1/persons/{curp}/record-restrictions",
                     json={"categories": ["mental_health"]}, headers=me)  # fmt: skip
    assert (await client.get("/fhir/Condition/dx-5", headers=issste)).status_code == 403
    assert (await client.get("/fhir/Condition/dx-5", headers=imss)).status_code == 200
    # A Patient outside the registry is kept, and is its own record's partition.
    tokens = app.state.tokens
    machine = Principal("client:lector", "lector", Role.CLIENT, 2,
                        scopes=frozenset({"system/*.read"}))  # fmt: skip
    system = {"Authorization": f"Bearer {tokens.issue(machine)}"}
    outside = (await client.get("/fhir/Patient/externo-1", headers=system)).json()
    assert outside["gender"] == "female"
    assert (await client.get("/fhir/Patient/externo-1", headers=imss)).status_code == 403
    assert (await client.get("/fhir/Observation/obs-4", headers=system)).status_code == 200
    # Audited: one entry per person per chunk, the importer named.
    auditor = token_for(Role.AUDITOR)
    log = (await client.get("/api/v1/audit/events?action=records:bulk:import",
                            headers=auditor)).json()["items"]  # fmt: skip
    assert {e["person_curp"] for e in log} == {curp, other, "externo-1"}
    assert {e["actor"] for e in log} == {"importacion:prueba.ndjson"}
    # Chunks of two accepted lines: [1,2] [6,7] (nothing written) [9,10] (two persons)
    # [11,12] [13,14] (two persons) [15].
    assert len(log) == 7

    # Again: same ids and same content are left alone; a line without id is new each time;
    # line 12 now finds its target (stored by the first run).
    again = await bulk.import_lines(
        app.state.sessions, importer(app), lines, source="prueba.ndjson", chunk_size=2
    )
    assert (again.created, again.updated, again.unchanged, again.rejected) == (2, 0, 7, 6)
    assert sorted(r.line for r in again.rejects) == [3, 4, 5, 6, 7, 8]
    # Changed content is a new version; the earlier one stays in the history.
    noted = {**dx1, "note": [{"text": "control con dieta"}]}
    moved = {**condition(other), "id": "dx-1"}  # would move it to another person's record
    third = await bulk.import_lines(
        app.state.sessions, importer(app), ndjson(noted, moved), source="cambios.ndjson",
        chunk_size=5,
    )  # fmt: skip
    assert (third.updated, third.rejected) == (1, 1)
    assert "no cambia de paciente" in third.rejects[0].reason
    history = (await client.get("/fhir/Condition/dx-1/_history", headers=imss)).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert "note" not in history["entry"][1]["resource"]
    # Only a system imports; a clinician's principal is refused before anything is read.
    doctor = Caller(Principal("account:x", "medica", Role.CLINICIAN, 2), app.state.audit)
    with pytest.raises(bulk.FhirError):
        await bulk.import_lines(app.state.sessions, doctor, lines, source="x")


async def test_lenient_import_stores_and_reports_references_to_nothing(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    lines = ndjson(
        heart_rate(curp, "obs-a", encounter={"reference": "Encounter/nada"}),
        heart_rate(curp, "obs-b", hasMember=[{"reference": "urn:uuid:sin-bundle"}]),
        heart_rate("inexistente", "obs-c"),
    )
    dangling = bytearray()

    class Sink:
        def write(self, data: bytes) -> int:
            dangling.extend(data)
            return len(data)

    report = await bulk.import_lines(
        app.state.sessions, importer(app), lines, source="laxa.ndjson", lenient=True,
        dangling_out=Sink(),  # type: ignore[arg-type]
    )  # fmt: skip
    assert (report.created, report.rejected, report.dangling) == (3, 0, 3)
    found = sorted(
        (d["linea"], d["referencia"]) for d in map(orjson.loads, bytes(dangling).split(b"\n")[:-1])
    )
    assert found == [(1, "Encounter/nada"), (2, "urn:uuid:sin-bundle"), (3, "Patient/inexistente")]
    # The same lines are left alone now (same ids, same content); under new ids, without
    # lenient, the same references refuse them.
    again = await bulk.import_lines(app.state.sessions, importer(app), lines, source="otra")
    assert (again.created, again.unchanged) == (0, 3)
    renamed = [(n, raw.replace(b'"obs-', b'"nueva-')) for n, raw in lines]
    strict = await bulk.import_lines(
        app.state.sessions, importer(app), renamed, source="estricta.ndjson"
    )
    assert (strict.created, strict.rejected) == (0, 3)


def test_import_command(cli_env: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "personal.ndjson"
    lines = [
        {"resourceType": "Practitioner", "id": "dra-1", "name": [{"family": "Pérez"}]},
        {"resourceType": "PractitionerRole", "id": "rol-1",
         "practitioner": {"reference": "Practitioner/dra-1"}},
        {"resourceType": "PractitionerRole", "id": "rol-2",
         "practitioner": {"reference": "Practitioner/nadie"}},
        {"resourceType": "Basic", "id": "b-1", "code": {"text": "nota"}},
        {"resourceType": "Practitioner", "id": "dra-2", "birthDate": "ayer"},
    ]  # fmt: skip
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    for option in (["--institution", "999"], ["--clues", "HGIMS"]):  # a typo is refused
        refused = cli_env.invoke(cli, ["records", "import", str(path), "-q", *option])
        assert refused.exit_code == 2, (option, refused.output)
        assert option[0] in refused.output
    assert not (tmp_path / "personal.rechazos.ndjson").exists()  # nothing was read
    # One worker process checks the lines (the path large files take on PostgreSQL).
    result = cli_env.invoke(
        cli, ["records", "import", str(path), "--chunk", "2", "-q", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "nuevos 3" in result.output
    rejects = [
        orjson.loads(x) for x in (tmp_path / "personal.rechazos.ndjson").read_bytes().splitlines()
    ]
    assert [(r["linea"], r["recurso"]) for r in rejects] == [(3, "PractitionerRole/rol-2"),
                                                             (5, "Practitioner/dra-2")]  # fmt: skip
    assert "Practitioner/nadie" in rejects[0]["motivo"]
    assert not (tmp_path / "personal.sin-destino.ndjson").exists()
    lenient = cli_env.invoke(cli, ["records", "import", str(path), "--lenient", "-q"])
    assert lenient.exit_code == 0, lenient.output
    assert "nuevos 1" in lenient.output
    assert "sin cambios 3" in lenient.output
    dangling = orjson.loads((tmp_path / "personal.sin-destino.ndjson").read_bytes())
    assert dangling == {"linea": 3, "recurso": "PractitionerRole/rol-2",
                        "referencia": "Practitioner/nadie"}  # fmt: skip


async def test_a_large_import_refreshes_the_planner_statistics(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """After a big load the tables are analyzed (at 1 M resources, searches planned on an
    empty table's statistics fell to 6/s). Here "big" is lowered to one resource."""
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)

    async def analyzed() -> Any:
        """PostgreSQL: when fhir_tokens was last analyzed; SQLite: its statistics rows."""
        async with app.state.sessions() as s:
            if s.bind.dialect.name == "postgresql":
                return await s.scalar(text(
                    "SELECT coalesce(last_analyze, 'epoch') FROM pg_stat_user_tables "
                    "WHERE relname = 'fhir_tokens'"
                ))  # fmt: skip
            if await s.scalar(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
            ):
                return await s.scalar(
                    text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'fhir_tokens'")
                )
            return 0

    async with app.state.sessions() as s, s.begin():  # forget earlier tests' statistics
        if s.bind.dialect.name == "sqlite" and await analyzed():
            await s.execute(text("DELETE FROM sqlite_stat1 WHERE tbl = 'fhir_tokens'"))
    before = await analyzed()
    lines = ndjson(encounter(curp, "enc-s1"), {**condition(curp), "id": "dx-s1"})
    report = await bulk.import_lines(
        app.state.sessions, importer(app), lines, source="s.ndjson", analyze_after=1
    )
    assert report.created == 2
    after = await analyzed()
    assert after > before  # a newer ANALYZE (PostgreSQL), rows where there were none (SQLite)


async def test_an_update_committed_while_a_chunk_classifies_is_not_overwritten(
    client: httpx.AsyncClient, token_for: TokenFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clinician's update commits between the chunk's read of the stored versions and its
    write: the chunk sees it (the rows it changes are locked and their versions checked) and
    leaves it (a change made through the API since the import is not undone); the
    clinician's version stays."""
    from salud.records import bulk_repository

    app = client._transport.app  # type: ignore[attr-defined]
    postgresql = backend() == "postgresql"
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    first = await bulk.import_lines(
        app.state.sessions, importer(app), ndjson(heart_rate(curp, "fc-1")), source="x"
    )
    assert first.created == 1
    read_stored = bulk_repository.existing
    changed = heart_rate(curp, "fc-1", valueQuantity={"value": 80, "unit": "/min"})
    puts: list[asyncio.Task[httpx.Response]] = []

    async def existing_then_a_clinician_updates(*args: Any) -> Any:
        found = await read_stored(*args)
        if not puts:  # once: the clinician's update right after the chunk's read
            put = client.put("/fhir/Observation/fc-1", json=changed, headers=doctor)
            puts.append(asyncio.ensure_future(put))
            if postgresql:  # it commits before the chunk goes on
                assert (await puts[0]).status_code == 200
        return found

    monkeypatch.setattr(bulk_repository, "existing", existing_then_a_clinician_updates)
    again = await bulk.import_lines(
        app.state.sessions, importer(app),
        ndjson(heart_rate(curp, "fc-1", valueQuantity={"value": 90, "unit": "/min"})),
        source="x",
    )  # fmt: skip
    # PostgreSQL: the chunk sees the clinician's version (the rows it changes are locked and
    # their versions checked) and, as it was written through the API, does not undo it.
    assert (again.updated, again.rejected) == ((0, 1) if postgresql else (1, 0))
    # SQLite: the chunk holds the only write lock from its read, so the update waits for it
    # and then either finds version 2 and writes 3, or (had it read version 1 before the
    # chunk committed) is a 409 that says to read again: never a 500, never a lost version.
    put = await puts[0]
    history = (await client.get("/fhir/Observation/fc-1/_history", headers=doctor)).json()
    values = {
        e["resource"]["meta"]["versionId"]: e["resource"]["valueQuantity"]["value"]
        for e in history["entry"]
    }
    if postgresql:
        assert again.rejects[0].reason == bulk.CHANGED_SINCE
        assert values == {"1": 72, "2": 80}
    elif put.status_code == 409:
        assert "vuelva a leerlo" in put.json()["issue"][0]["diagnostics"]
        assert values == {"1": 72, "2": 90}
    else:
        assert put.status_code == 200, put.text
        assert values == {"1": 72, "2": 90, "3": 80}
    # and the resource goes on taking updates
    last = heart_rate(curp, "fc-1", valueQuantity={"value": 95, "unit": "/min"})
    assert (
        await client.put("/fhir/Observation/fc-1", json=last, headers=doctor)
    ).status_code == 200


@pytest.mark.parametrize("workers", [0, 2])
async def test_numbers_are_stored_as_written_with_or_without_worker_processes(
    client: httpx.AsyncClient, token_for: TokenFor, workers: int
) -> None:
    """The lines checked in worker processes come back pickled: each number keeps its text
    (2e3 is not 2E+3), and importing the same file again leaves every line alone."""
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    numbers = ["2e3", "0.0000001", "1.50", "-0.0", "12345678901234567.50"]

    def line(n: int, value: str) -> bytes:
        return (
            f'{{"resourceType": "Observation", "id": "num-{workers}-{n}", "status": "final", '
            f'"code": {{"text": "FC"}}, "subject": {{"reference": "Patient/{curp}"}}, '
            f'"valueQuantity": {{"value": {value}}}}}'
        ).encode()

    lines = [(n, line(n, value)) for n, value in enumerate(numbers, 1)]
    first = await bulk.import_lines(
        app.state.sessions, importer(app), lines, source="numeros.ndjson", workers=workers
    )
    assert (first.created, first.rejected) == (len(numbers), 0)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    for n, value in enumerate(numbers, 1):
        read = await client.get(f"/fhir/Observation/num-{workers}-{n}", headers=doctor)
        assert f'"valueQuantity":{{"value":{value}}}' in read.text, (value, read.text)
    again = await bulk.import_lines(
        app.state.sessions, importer(app), lines, source="numeros.ndjson", workers=workers
    )
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(numbers))


async def test_values_wider_than_their_columns_are_refused_line_by_line(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """An id past FHIR's 64 characters, an identifier system past the index's 200, a
    reference past Type/id: each line is refused with its reason (PostgreSQL would refuse the
    whole chunk's write, and every re-run would stop there), and the others are stored. The
    API refuses the same."""
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    long_system = {"system": "urn:x:" + "s" * 200, "value": "1"}
    lines = ndjson(
        {"resourceType": "Practitioner", "id": "p" * 65},
        {"resourceType": "Practitioner", "id": "sistema-largo", "identifier": [long_system]},
        heart_rate(curp, "obs-ref", encounter={"reference": "Encounter/" + "e" * 120}),
        heart_rate(curp, "obs-buena"),
    )
    for lenient in (False, True):
        report = await bulk.import_lines(
            app.state.sessions, importer(app), lines, source="anchos.ndjson", lenient=lenient
        )
        assert report.rejected == 3, report.rejects
        reasons = {r.line: r.reason for r in report.rejects}
        assert "64" in reasons[1]
        assert "200" in reasons[2]
        assert "Tipo/id" in reasons[3]
    answer = await client.post(
        "/fhir/Practitioner",
        json={"resourceType": "Practitioner", "identifier": [long_system]},
        headers=doctor,
    )
    assert answer.status_code == 400, answer.text
    assert outcome(answer)["issue"][0]["expression"] == ["Practitioner.identifier"]


async def test_a_rerun_keeps_the_whole_list_and_brings_back_nothing_deleted(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Re-running a file (the documented recovery after a crash): the lenient list of
    references to nothing is the file's whole list again, not emptied; a resource a
    clinician deleted since is refused with the reason, not brought back."""
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    lines = ndjson(
        heart_rate(curp, "obs-suelta", encounter={"reference": "Encounter/nada"}),
        heart_rate(curp, "obs-borrable"),
    )
    first = await bulk.import_lines(
        app.state.sessions, importer(app), lines, source="otra.ndjson", lenient=True
    )
    assert (first.created, first.dangling) == (2, 1)
    deleted = await client.delete("/fhir/Observation/obs-borrable", headers=doctor)
    assert deleted.status_code == 204
    again = await bulk.import_lines(
        app.state.sessions, importer(app), lines, source="otra.ndjson", lenient=True
    )
    assert (again.created, again.updated, again.unchanged, again.dangling) == (0, 0, 1, 1)
    assert [(r.line, "borrado" in r.reason) for r in again.rejects] == [(2, True)]
    gone = await client.get("/fhir/Observation/obs-borrable", headers=doctor)
    assert gone.status_code == 410


async def _audit_of(app: Any, action: str) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(person, outcome, detail) of every audit entry of this action, in order."""
    async with app.state.sessions() as s:
        rows = await s.execute(
            select(AuditEvent.person_curp, AuditEvent.outcome, AuditEvent.detail)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.seq)
        )
        return [(r[0], r[1], r[2] or {}) for r in rows.all()]


async def test_an_import_does_not_replace_an_entry_restricted_to_another_institution(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """As the API refuses an update of an entry the person restricted to the institution
    that recorded it (403), the import refuses the line, recorded as denied on the person's
    record: it would otherwise replace the entry and take it over (tagged with the
    importer's institution, read by it and hidden from the one that recorded it)."""
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    for doctor in (imss, issste):
        await cared_for(client, curp, doctor)
    made = await client.post("/fhir/Condition", json=condition(curp, "F32.9"), headers=imss)
    assert made.status_code == 201, made.text
    typed = {**condition(curp, "F32.9"), "id": made.json()["id"]}  # written through the API
    imported = {**condition(curp, "F32.9"), "id": "dx-animo"}  # written by an IMSS import
    first = await bulk.import_lines(
        app.state.sessions, importer(app), ndjson(imported), source="imss.ndjson"
    )
    assert first.created == 1
    me = token_for(Role.CITIZEN, curp=curp)
    restricted = await client.put(f"/api/v1/persons/{curp}/record-restrictions",
                                  json={"categories": ["mental_health"]}, headers=me)  # fmt: skip
    assert restricted.status_code == 200

    noted = [{**doc, "note": [{"text": "otra nota"}]} for doc in (typed, imported)]
    for institution, clues in ((3, ISSSTE_UNIT), (None, None)):  # another one, or none
        report = await bulk.import_lines(
            app.state.sessions, importer(app, institution, clues), ndjson(*noted),
            source="otra.ndjson",
        )  # fmt: skip
        assert (report.updated, report.rejected) == (0, 2)
        assert {r.reason for r in report.rejects} == {bulk.RESTRICTED}
        assert "mental" not in bulk.RESTRICTED  # the category is not named to the importer
    for doc in (typed, imported):
        url = f"/fhir/Condition/{doc['id']}"
        kept = await client.get(url, headers=imss)
        assert kept.status_code == 200
        assert (kept.json()["meta"]["versionId"], "note" in kept.json()) == ("1", False)
        assert (await client.get(url, headers=issste)).status_code == 403
    denied = [e for e in await _audit_of(app, bulk.ACTION) if e[1] == "denied"]
    assert denied == [(curp, "denied", {"restricted": ["mental_health"], "lines": [1, 2]})] * 2

    # The institution that recorded it imports a new version as before; a line with the
    # content stored is left alone, whoever imports it.
    same = await bulk.import_lines(
        app.state.sessions, importer(app, 3, ISSSTE_UNIT), ndjson(imported), source="x.ndjson"
    )
    assert (same.unchanged, same.rejected) == (1, 0)
    ours = await bulk.import_lines(
        app.state.sessions, importer(app), ndjson(noted[1]), source="imss.ndjson"
    )
    assert ours.updated == 1
    read = (await client.get("/fhir/Condition/dx-animo", headers=imss)).json()
    assert (read["meta"]["versionId"], read["note"]) == ("2", [{"text": "otra nota"}])


async def test_a_rerun_does_not_undo_a_correction_made_through_the_api(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Re-running a file (the documented recovery after a crash) leaves a resource changed
    through the API since the import as it is, as it leaves a deleted one: its line is what
    that import wrote, so it is left alone. Other data for it (a later file from the source
    system) is refused with the reason, never silently over the correction. A resource no
    import ever wrote (created through the API) is updated by an import as by any writer."""
    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    lines = ndjson({**condition(curp), "id": "dx-r"}, {**condition(curp, "I10"), "id": "dx-s"})
    first = await bulk.import_lines(app.state.sessions, importer(app), lines, source="r.ndjson")
    assert first.created == 2
    fixed = {**condition(curp, "I10"), "id": "dx-r"}
    assert (await client.put("/fhir/Condition/dx-r", json=fixed, headers=doctor)).is_success
    again = await bulk.import_lines(app.state.sessions, importer(app), lines, source="r.ndjson")
    assert (again.updated, again.unchanged, again.rejected) == (0, 2, 0)
    read = (await client.get("/fhir/Condition/dx-r", headers=doctor)).json()
    assert (read["code"]["coding"][0]["code"], read["meta"]["versionId"]) == ("I10", "2")
    # Newer data from the source system over the correction: refused, saying why.
    newer = {**condition(curp, "E11.9"), "id": "dx-r", "note": [{"text": "nuevo"}]}
    refused = await bulk.import_lines(
        app.state.sessions, importer(app), ndjson(newer), source="s.ndjson"
    )
    assert [(r.line, r.reason) for r in refused.rejects] == [(1, bulk.CHANGED_SINCE)]
    assert "cambiado por la API" in bulk.CHANGED_SINCE
    # The correction itself, imported: nothing to do.
    same = await bulk.import_lines(
        app.state.sessions, importer(app), ndjson(fixed), source="otra.ndjson"
    )
    assert (same.unchanged, same.rejected) == (1, 0)
    # What an import wrote, another import changes.
    noted = {**condition(curp, "I10"), "id": "dx-s", "note": [{"text": "control"}]}
    later = await bulk.import_lines(
        app.state.sessions, importer(app), ndjson(noted), source="otra.ndjson"
    )
    assert later.updated == 1
    # A file naming a resource twice (two versions), corrected since: a re-run leaves both
    # of its lines alone.
    twice = ndjson(
        {**condition(curp, "E10.9"), "id": "dx-t"}, {**condition(curp, "E11.9"), "id": "dx-t"}
    )
    assert (
        await bulk.import_lines(app.state.sessions, importer(app), twice, source="t.ndjson")
    ).rejected == 0
    corrected = {**condition(curp, "E13.9"), "id": "dx-t"}
    assert (await client.put("/fhir/Condition/dx-t", json=corrected, headers=doctor)).is_success
    rerun = await bulk.import_lines(app.state.sessions, importer(app), twice, source="t.ndjson")
    assert (rerun.updated, rerun.unchanged, rerun.rejected) == (0, 2, 0)
    # Created through the API, never imported: the institution's own import updates it.
    api_made = {**condition(curp, "J45.9"), "id": "dx-api"}
    assert (await client.put("/fhir/Condition/dx-api", json=api_made, headers=doctor)).is_success
    update = {**api_made, "note": [{"text": "del sistema del hospital"}]}
    owned = await bulk.import_lines(
        app.state.sessions, importer(app), ndjson(update), source="h.ndjson"
    )
    assert (owned.updated, owned.rejected) == (1, 0)


async def test_the_import_audit_names_each_persons_own_lines(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A person's entry names the first and last of that person's lines in the chunk, not
    the chunk's: a person whose only line is 3 reads [3, 3]."""
    app = client._transport.app  # type: ignore[attr-defined]
    a, b = await patient(client), await patient(client)
    lines = ndjson(
        {**condition(a), "id": "dx-a1"}, heart_rate(a, "fc-a2"), {**condition(b), "id": "dx-b3"},
        heart_rate(a, "fc-a4"), {"resourceType": "Practitioner", "id": "dra-5"},
    )  # fmt: skip
    report = await bulk.import_lines(app.state.sessions, importer(app), lines, source="a.ndjson")
    assert report.created == 5
    entries = {p: d for p, _, d in await _audit_of(app, bulk.ACTION)}
    assert entries == {
        a: {"created": 3, "lines": [1, 4]},
        b: {"created": 1, "lines": [3, 3]},
        None: {"created": 1, "lines": [5, 5]},
    }


async def test_a_chunk_names_more_values_than_a_statement_takes_parameters(
    client: httpx.AsyncClient,
) -> None:
    """A statement takes at most 32,767 parameters (PostgreSQL's protocol, SQLite's limit):
    the queries of a large chunk (--chunk goes up to 100,000) send their lists in slices."""
    from salud.kit.clock import utcnow
    from salud.records import bulk_repository, service

    app = client._transport.app  # type: ignore[attr-defined]
    curp = await patient(client)
    many = 33_000
    targets = (
        {f"Encounter/enc-{i}" for i in range(many)}
        | {f"Patient/externo-{i}" for i in range(many)}
        | {f"Location/XXXXX{i:06d}" for i in range(many)}  # CLUES keys: the catalog's
        | {f"Coverage/ZZZZ{i:014d}-2" for i in range(many)}  # the registry's affiliations
    )  # fmt: skip
    async with app.state.sessions() as session:  # rolled back at the end
        now = utcnow()
        rows = [
            ("Encounter", f"enc-{i}", 1, now, False, curp, 2, IMSS_UNIT, "importacion:m", "",
             orjson.dumps(encounter(curp, f"enc-{i}")).decode())
            for i in range(1, many)
        ]  # fmt: skip
        pks = await bulk_repository.insert_new(session, rows)
        missing = set(await service.missing_targets(session, targets | {f"Patient/{curp}"}))
        assert missing == targets - {f"Encounter/enc-{i}" for i in range(1, many)}
        wanted = {"Encounter": [f"enc-{i}" for i in range(many)]}
        assert len(await bulk_repository.existing(session, wanted)) == many - 1
        nobody = [f"X{i}" for i in range(many)]
        assert await bulk_repository.restrictions_for(session, nobody) == {}
        # New versions: the current rows go to the history, their index rows are replaced.
        await bulk_repository.replace(
            session, [(pk, (*row[:2], 2, *row[3:])) for pk, row in zip(pks, rows, strict=True)]
        )
        versions = await bulk_repository.lock_versions(session, pks)
        assert set(versions.values()) == {2}
        await session.rollback()
