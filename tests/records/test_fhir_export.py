"""FHIR Bulk Data $export: every patient for a system with system/*.read only, one person's
record for whoever may open it, asynchronous (202, status URL, manifest), NDJSON files
behind the same token, `_type` and `_since`, restrictions kept, every person audited."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.context import Caller
from salud.access.models import AuditEvent
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.app import create_app
from salud.config import Settings
from salud.identity.models import Affiliation, Person
from salud.kit.clock import today_mx
from salud.records import bulk as bulk_import
from salud.records import export
from salud.records.indexing import fhir_instant
from salud.records.mirror import day_starts
from salud.storage import migrate
from tests.conftest import TokenFor
from tests.factories.persons import person_doc
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
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
DAY = timedelta(hours=24)


@pytest.fixture
async def bulk(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path,
    token_for: TokenFor,
) -> AsyncIterator[httpx.AsyncClient]:  # fmt: skip
    """The app with its export folder under the test's tmp_path, signed in as a supervisor."""
    app = create_app(settings.model_copy(update={"export_dir": tmp_path / "exports"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            c.headers.update(token_for(Role.SUPERVISOR))
            yield c


def system(
    client: httpx.AsyncClient, name: str, *scopes: str, institution: int = 3
) -> dict[str, str]:
    app = client._transport.app  # type: ignore[attr-defined]
    principal = Principal(f"client:{name}", name, Role.CLIENT, institution,
                          scopes=frozenset(scopes))  # fmt: skip
    return {"Authorization": f"Bearer {app.state.tokens.issue(principal)}"}


async def finished(client: httpx.AsyncClient, status_url: str, headers: dict[str, str]) -> Any:
    """Poll the status URL (202 while running) until the manifest (200)."""
    for _ in range(400):
        answer = await client.get(status_url, headers=headers)
        if answer.status_code != 202:
            assert answer.status_code == 200, answer.text
            return answer.json()
        assert "X-Progress" in answer.headers
        await asyncio.sleep(0.025)
    raise AssertionError("the export did not finish")


async def files(
    client: httpx.AsyncClient, manifest: Any, headers: dict[str, str]
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in manifest["output"]:
        answer = await client.get(item["url"], headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in answer.content.splitlines()]
        assert len(lines) == item["count"]
        for resource in lines:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        out[item["type"]] = lines
    return out


async def with_a_diagnosis(
    client: httpx.AsyncClient, token_for: TokenFor
) -> tuple[str, dict[str, str]]:
    """A registered person with one Condition an IMSS clinician recorded: (CURP, clinician)."""
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    made = await client.post("/fhir/Condition", json=condition(curp), headers=doctor)
    assert made.status_code == 201, made.text
    return curp, doctor


async def test_every_patient_only_for_a_system_with_system_read(
    bulk: httpx.AsyncClient, token_for: TokenFor
) -> None:
    first, second = await patient(bulk), await patient(bulk)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    for curp in (first, second):
        await cared_for(bulk, curp, imss)
    for curp, code in ((first, "E11.9"), (first, "F32.9"), (second, "I10")):
        answer = await bulk.post("/fhir/Condition", json=condition(curp, code), headers=imss)
        assert answer.status_code == 201, answer.text
    me = token_for(Role.CITIZEN, curp=first)
    restricted = await bulk.put(f"/api/v1/persons/{first}/record-restrictions",
                                json={"categories": ["mental_health"]}, headers=me)  # fmt: skip
    assert restricted.status_code == 200

    # Who may not: a clinician, a system with narrower scopes; and a request that is not async.
    everyone = "/fhir/Patient/$export"
    refused = await bulk.get(everyone, headers={**imss, **ASYNC})
    assert refused.status_code == 403
    assert "system/*.read" in outcome(refused)["issue"][0]["diagnostics"]
    narrow = system(bulk, "his.condiciones", "system/Condition.read")
    assert (await bulk.get(everyone, headers={**narrow, **ASYNC})).status_code == 403
    reader = system(bulk, "his.issste", "system/*.read")
    assert (await bulk.get(everyone, headers=reader)).status_code == 400  # no Prefer
    for query in (
        "_type=Nada",
        "_type=,",
        "_since=ayer",
        "_since=2024-01-01T10:00:00",  # no zone
        "_since=0001-01-01T00:00:00%2B14:00",
        "_elements=id",
        "_outputFormat=text/csv",
    ):
        answer = await bulk.get(f"{everyone}?{query}", headers={**reader, **ASYNC})
        assert answer.status_code == 400, (query, answer.text)
    purpose = {**reader, **ASYNC, "X-Salud-Purpose": "x" * 61}
    named = outcome(await bulk.get(everyone, headers=purpose))["issue"]
    assert "X-Salud-Purpose" in [e.get("expression", [None])[0] for e in named]

    kicked = await bulk.get(everyone, headers={**reader, **ASYNC})
    assert kicked.status_code == 202, kicked.text
    status_url = kicked.headers["content-location"]
    assert status_url.startswith("http://test/fhir/bulk/")
    other = system(bulk, "otro.sistema", "system/*.read")
    assert (await bulk.get(status_url, headers=other)).status_code == 404  # not its job
    manifest = await finished(bulk, status_url, reader)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("/fhir/Patient/$export")
    assert manifest["transactionTime"].endswith("Z")
    got = await files(bulk, manifest, reader)
    assert sorted(p["id"] for p in got["Patient"]) == sorted([first, second])
    for unlisted in ("job.json", "Nada.ndjson", "..%2Fjob.json", "%2E%2E%2Fjob.json"):
        answer = await bulk.get(f"{status_url}/{unlisted}", headers=reader)
        assert answer.status_code == 404, (unlisted, answer.text)  # only the manifest's files
    for odd in ("a" * 5000, "a" * 5000 + "/Patient.ndjson", "ABCDEF", "0" * 33):
        answer = await bulk.get(f"/fhir/bulk/{odd}", headers=reader)  # never a folder name
        assert answer.status_code == 404, (odd[:40], answer.text[:200])
    # Each person's affiliation as its Coverage (the registry's mirror, records/mirror.py).
    beneficiaries = sorted(c["beneficiary"]["reference"] for c in got["Coverage"])
    assert beneficiaries == sorted([f"Patient/{first}", f"Patient/{second}"])
    codes = sorted(
        (c["subject"]["reference"], c["code"]["coding"][0]["code"]) for c in got["Condition"]
    )
    # The depression entry stays with IMSS: the person restricted mental health.
    assert codes == sorted([(f"Patient/{first}", "E11.9"), (f"Patient/{second}", "I10")])
    url = manifest["output"][0]["url"]
    assert (await bulk.get(url, headers=other)).status_code == 404
    assert (await bulk.get(url, headers={"Authorization": ""})).status_code == 401

    auditor = token_for(Role.AUDITOR)
    log = (await bulk.get("/api/v1/audit/events?action=records:Patient:export",
                          headers=auditor)).json()["items"]  # fmt: skip
    assert sorted(e["person_curp"] for e in log) == sorted([first, second])
    started = (await bulk.get("/api/v1/audit/events?action=records:export:start",
                              headers=auditor)).json()["items"]  # fmt: skip
    assert sorted(e["outcome"] for e in started) == ["denied", "denied", "success"]

    # _type and _since narrow it; nothing written after _since: no files at all.
    later = await bulk.get(
        f"{everyone}?_type=Condition&_since={manifest['transactionTime']}",
        headers={**reader, **ASYNC},
    )
    assert (await finished(bulk, later.headers["content-location"], reader))["output"] == []
    only = await bulk.get(f"{everyone}?_type=Condition", headers={**reader, **ASYNC})
    typed = await finished(bulk, only.headers["content-location"], reader)
    assert [o["type"] for o in typed["output"]] == ["Condition"]

    assert (await bulk.delete(status_url, headers=reader)).status_code == 202
    assert (await bulk.get(status_url, headers=reader)).status_code == 404


async def test_one_persons_record_for_whoever_may_open_it(
    bulk: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp, other = await patient(bulk), await patient(bulk)
    imss = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    issste = clinician(token_for, 3, ISSSTE_UNIT, "medico.issste")
    for person in (curp, other):
        await cared_for(bulk, person, imss)
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{curp}"},
               "code": {"text": "Penicilina"}}  # fmt: skip
    assert (await bulk.post("/fhir/AllergyIntolerance", json=allergy, headers=imss)).is_success
    await bulk.post("/fhir/Condition", json=condition(curp, "F32.9"), headers=imss)
    await bulk.post("/fhir/Condition", json=condition(other, "I10"), headers=imss)
    me = token_for(Role.CITIZEN, curp=curp)
    await bulk.put(f"/api/v1/persons/{curp}/record-restrictions",
                   json={"categories": ["mental_health"]}, headers=me)  # fmt: skip

    url = f"/fhir/Patient/{curp}/$export"
    assert (await bulk.get(url, headers={**issste, **ASYNC})).status_code == 403  # no basis
    stranger = token_for(Role.CITIZEN, curp=other)
    assert (await bulk.get(url, headers={**stranger, **ASYNC})).status_code == 403
    await cared_for(bulk, curp, issste)
    for headers, conditions in ((issste, 0), (me, 1)):
        kicked = await bulk.get(url, headers={**headers, **ASYNC})
        assert kicked.status_code == 202, kicked.text
        manifest = await finished(bulk, kicked.headers["content-location"], headers)
        got = await files(bulk, manifest, headers)
        assert [p["id"] for p in got["Patient"]] == [curp]
        assert [c["beneficiary"]["reference"] for c in got["Coverage"]] == [f"Patient/{curp}"]
        assert [a["code"]["text"] for a in got["AllergyIntolerance"]] == ["Penicilina"]
        # The person sees the entry they restricted; ISSSTE does not; nobody else's data.
        assert len(got.get("Condition", [])) == conditions
    auditor = token_for(Role.AUDITOR)
    log = (await bulk.get("/api/v1/audit/events?action=records:Patient:export",
                          headers=auditor)).json()["items"]  # fmt: skip
    # The two refusals and the two exports, all of this person's record, nobody else's.
    assert {e["person_curp"] for e in log} == {curp}
    assert sorted(e["outcome"] for e in log) == ["denied", "denied", "success", "success"]
    nowhere = "/fhir/Patient/XEXX010101HNEXXXA4/$export"  # a CURP nobody registered
    assert (await bulk.get(nowhere, headers={**imss, **ASYNC})).status_code == 403  # no basis
    owner = token_for(Role.CITIZEN, curp="XEXX010101HNEXXXA4")  # past the access check
    assert (await bulk.get(nowhere, headers={**owner, **ASYNC})).status_code == 404


async def test_a_job_whose_process_died_is_reported_failed(
    bulk: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The state lives in job.json: a running job with no heartbeat for a while, and no task
    in this process, was cut short (a restart): the status says so instead of 202 forever."""
    reader = system(bulk, "his.issste", "system/*.read")
    kicked = await bulk.get("/fhir/Patient/$export", headers={**reader, **ASYNC})
    status_url = kicked.headers["content-location"]
    await finished(bulk, status_url, reader)
    root = tmp_path / "exports"
    job = export.load_job(root, status_url.rsplit("/", 1)[1], "client:his.issste", DAY)
    job.status, job.heartbeat = "running", "2026-01-01T00:00:00.000Z"
    export._save(root, job)
    answer = await bulk.get(status_url, headers=reader)
    assert answer.status_code == 500
    assert "interrumpió" in outcome(answer)["issue"][0]["diagnostics"]
    job.heartbeat = fhir_instant(export.utcnow())  # a live heartbeat from another process
    export._save(root, job)
    assert (await bulk.get(status_url, headers=reader)).status_code == 202


async def test_finished_jobs_expire_and_their_files_are_removed(
    bulk: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The manifest says when its files go (Expires); after that the status and the files
    are 404 and the folder is gone; a kick-off sweeps every expired folder, and one left
    without its job.json."""
    reader = system(bulk, "his.issste", "system/*.read")
    kicked = await bulk.get("/fhir/Patient/$export", headers={**reader, **ASYNC})
    status_url = kicked.headers["content-location"]
    await finished(bulk, status_url, reader)
    answer = await bulk.get(status_url, headers=reader)
    ends = parsedate_to_datetime(answer.headers["Expires"])
    assert timedelta(hours=23) < ends - export.utcnow() <= DAY
    root = tmp_path / "exports"
    job_id = status_url.rsplit("/", 1)[1]
    job = export.load_job(root, job_id, "client:his.issste", DAY)
    job.finished = fhir_instant(export.utcnow() - DAY - timedelta(seconds=1))
    export._save(root, job)
    gone = await bulk.get(status_url, headers=reader)
    assert gone.status_code == 404
    assert "expiró" in outcome(gone)["issue"][0]["diagnostics"]
    assert not (root / job_id).exists()

    kicked = await bulk.get("/fhir/Patient/$export", headers={**reader, **ASYNC})
    await finished(bulk, kicked.headers["content-location"], reader)
    old = export.load_job(root, kicked.headers["content-location"].rsplit("/", 1)[1],
                          "client:his.issste", DAY)  # fmt: skip
    old.finished = "2026-01-01T00:00:00.000Z"
    export._save(root, old)
    orphan = root / ("0123abcd" * 4)  # a job id, its job.json never written
    orphan.mkdir()
    os.utime(orphan, (0, 0))
    newer = await bulk.get("/fhir/Patient/$export", headers={**reader, **ASYNC})
    assert newer.status_code == 202
    assert not (root / old.id).exists()
    assert not orphan.exists()
    assert (root / newer.headers["content-location"].rsplit("/", 1)[1]).exists()


async def test_an_owner_may_run_only_so_many_exports_at_once(
    settings: Settings, bulk: httpx.AsyncClient, tmp_path: Path
) -> None:
    limit = settings.export_max_running
    reader = system(bulk, "his.issste", "system/*.read")
    root = tmp_path / "exports"
    running = []
    for _ in range(limit):
        kicked = await bulk.get("/fhir/Patient/$export", headers={**reader, **ASYNC})
        assert kicked.status_code == 202
        status_url = kicked.headers["content-location"]
        await finished(bulk, status_url, reader)
        job = export.load_job(root, status_url.rsplit("/", 1)[1], "client:his.issste", DAY)
        # Still running in another process: a fresh heartbeat, no task here.
        job.status, job.heartbeat, job.finished = "running", fhir_instant(export.utcnow()), None
        export._save(root, job)
        running.append(status_url)
    refused = await bulk.get("/fhir/Patient/$export", headers={**reader, **ASYNC})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit()
    assert outcome(refused)["issue"][0]["code"] == "throttled"
    other = system(bulk, "his.imss", "system/*.read", institution=2)
    assert (await bulk.get("/fhir/Patient/$export", headers={**other, **ASYNC})).status_code == 202
    assert (await bulk.delete(running[0], headers=reader)).status_code == 202
    again = await bulk.get("/fhir/Patient/$export", headers={**reader, **ASYNC})
    assert again.status_code == 202


async def test_an_export_without_patient_or_coverage_does_not_read_the_registry(
    bulk: httpx.AsyncClient, token_for: TokenFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    curp, _ = await with_a_diagnosis(bulk, token_for)

    async def no_registry(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the registry was read")

    monkeypatch.setattr(export.bulk_repository, "persons_page", no_registry)
    reader = system(bulk, "his.issste", "system/*.read")
    kicked = await bulk.get("/fhir/Patient/$export?_type=Condition", headers={**reader, **ASYNC})
    manifest = await finished(bulk, kicked.headers["content-location"], reader)
    conditions = (await files(bulk, manifest, reader))["Condition"]
    assert curp in {c["subject"]["reference"].removeprefix("Patient/") for c in conditions}


async def test_a_job_finished_before_jobs_recorded_when_expires_from_its_heartbeat(
    bulk: httpx.AsyncClient, tmp_path: Path
) -> None:
    reader = system(bulk, "his.issste", "system/*.read")
    kicked = await bulk.get("/fhir/Patient/$export", headers={**reader, **ASYNC})
    status_url = kicked.headers["content-location"]
    await finished(bulk, status_url, reader)
    root = tmp_path / "exports"
    job_id = status_url.rsplit("/", 1)[1]
    state = orjson.loads((root / job_id / "job.json").read_bytes())
    del state["finished"]  # as the job files of the earlier version were written
    state["heartbeat"] = "2026-01-01T00:00:00.000Z"
    (root / job_id / "job.json").write_bytes(orjson.dumps(state))
    assert (await bulk.get(status_url, headers=reader)).status_code == 404
    assert not (root / job_id).exists()


async def test_the_system_export_adds_what_is_in_nobodys_record(
    bulk: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """GET /fhir/$export (Bulk Data system level): every patient's record as Patient/$export
    gives it, and the resources in no person's record (a practitioner); for a system with
    system/*.read only, recorded as one entry with the counts."""
    curp, imss = await with_a_diagnosis(bulk, token_for)
    doctor = {"resourceType": "Practitioner", "name": [{"family": "Pérez", "given": ["Ana"]}]}
    made = await bulk.post("/fhir/Practitioner", json=doctor, headers=imss)
    assert made.status_code == 201, made.text
    # A dispensation naming its patient only by an absolute URL is stored under nobody, yet
    # it is a person's data: a type of the Patient compartment never goes out as nobody's.
    dispensed = {"resourceType": "MedicationDispense", "status": "completed",
                 "medicationCodeableConcept": {"text": "Metformina"},
                 "subject": {"reference": f"https://otro.org/fhir/Patient/{curp}"}}  # fmt: skip
    # (A clinician may not write it: no basis is possible for it. A system may.)
    refused = await bulk.post("/fhir/MedicationDispense", json=dispensed, headers=imss)
    assert refused.status_code == 403
    writer = system(bulk, "his.farmacia", "system/*.write")
    kept = await bulk.post("/fhir/MedicationDispense", json=dispensed, headers=writer)
    assert kept.status_code == 201, kept.text
    # Nor read it, whoever recorded it.
    url = f"/fhir/MedicationDispense/{kept.json()['id']}"
    assert (await bulk.get(url, headers=imss)).status_code == 403
    # Nor through an _include from a record the clinician may read (R4B does not check a
    # reference's target type); what belongs to nobody and holds no one's data still comes.
    for target in (url, f"/fhir/Practitioner/{made.json()['id']}"):
        pointer = condition(curp, encounter={"reference": target.removeprefix("/fhir/")})
        assert (await bulk.post("/fhir/Condition", json=pointer, headers=imss)).status_code == 201
    search = "/fhir/Condition?_include=Condition:encounter&patient=" + curp
    entries = (await bulk.get(search, headers=imss)).json()["entry"]
    included = [e["resource"]["resourceType"] for e in entries if e["search"]["mode"] == "include"]
    assert included == ["Practitioner"]

    assert (await bulk.get("/fhir/$export", headers={**imss, **ASYNC})).status_code == 403
    narrow = system(bulk, "his.condiciones", "system/Condition.read")
    assert (await bulk.get("/fhir/$export", headers={**narrow, **ASYNC})).status_code == 403
    reader = system(bulk, "ministerio", "system/*.read")
    everything: dict[str, dict[str, list[Any]]] = {}
    for level in ("$export", "Patient/$export"):
        kicked = await bulk.get(f"/fhir/{level}", headers={**reader, **ASYNC})
        assert kicked.status_code == 202, kicked.text
        manifest = await finished(bulk, kicked.headers["content-location"], reader)
        assert manifest["request"].endswith(f"/fhir/{level}")
        everything[level] = await files(bulk, manifest, reader)
    system_level, patient_level = everything["$export"], everything["Patient/$export"]
    assert [p["id"] for p in system_level["Practitioner"]] == [made.json()["id"]]
    assert "Practitioner" not in patient_level
    assert "MedicationDispense" not in system_level
    for kind in ("Patient", "Condition", "Coverage"):
        assert system_level[kind] == patient_level[kind], kind

    auditor = token_for(Role.AUDITOR)
    log = (await bulk.get("/api/v1/audit/events?action=records:export:unowned",
                          headers=auditor)).json()["items"]  # fmt: skip
    assert len(log) == 1
    async with sessions() as session:  # the entry's counts (the API's list does not show them)
        detail = await session.scalar(
            select(AuditEvent.detail).where(AuditEvent.action == "records:export:unowned")
        )
    assert detail is not None
    assert detail["resources"] == {"Practitioner": 1}


def test_a_job_file_written_by_a_newer_version_still_reads(tmp_path: Path) -> None:
    """job.json may carry fields this version does not know (a rolling upgrade): they are
    left aside, never a 500 for every kick-off that sweeps the folder."""
    moment = "2026-12-02T00:00:00.000Z"
    job_id = "ab" * 16  # as uuid4().hex
    job = export.Job(job_id, "client:x", "http://test/fhir/$export", "http://test/fhir", [],
                     None, None, moment, heartbeat=moment)  # fmt: skip
    export._folder(tmp_path, job.id).mkdir(parents=True)
    export._save(tmp_path, job)
    path = export._folder(tmp_path, job.id) / "job.json"
    path.write_bytes(orjson.dumps({**orjson.loads(path.read_bytes()), "nuevo": 1}))
    assert export.load_job(tmp_path, job_id, "client:x", DAY).request.endswith("$export")


async def test_a_refusal_for_the_clients_scopes_is_recorded(
    bulk: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A `_type` the client's scopes do not cover is a 403, recorded as a denied kick-off (on
    the person's record for a Patient-level export), as every refusal is."""
    curp = await patient(bulk)
    narrow = system(bulk, "his.obs", "system/Patient.read", "system/Observation.read")
    for url in (f"/fhir/Patient/{curp}/$export", "/fhir/$export"):
        refused = await bulk.get(f"{url}?_type=Condition", headers={**narrow, **ASYNC})
        assert refused.status_code == 403, refused.text
        assert "Condition" in outcome(refused)["issue"][0]["diagnostics"]
    async with sessions() as session:
        rows = await session.execute(
            select(AuditEvent.action, AuditEvent.outcome, AuditEvent.person_curp)
            .where(AuditEvent.actor == "his.obs")
            .order_by(AuditEvent.seq)
        )
        assert rows.all() == [
            ("records:export:start", "denied", curp),
            ("records:export:start", "denied", None),
        ]
    # An id no record can have (longer than 64): not found, not a 422 from the audit log.
    long_id = "x" * 70
    gone = await bulk.get(f"/fhir/Patient/{long_id}/$export?_type=Condition",
                          headers={**narrow, **ASYNC})  # fmt: skip
    assert gone.status_code == 404, gone.text


async def _ended_by_time(sessions: async_sessionmaker[AsyncSession], curp: str) -> datetime:
    """The person's affiliation ends two days ago and the registry last changed the person
    in 2020: the Coverage turned `cancelled` yesterday with no change in the registry. The
    moment it did (yesterday's beginning in Mexico)."""
    ended = today_mx() - timedelta(days=2)
    async with sessions() as session, session.begin():
        person_id = await session.scalar(select(Person.id).where(Person.curp == curp))
        await session.execute(
            update(Affiliation).where(Affiliation.person_id == person_id).values(valid_to=ended)
        )
        old = datetime(2020, 1, 1, tzinfo=UTC)
        await session.execute(update(Person).where(Person.id == person_id).values(updated_at=old))
    return day_starts(ended + timedelta(days=1))


async def test_a_coverage_that_ended_by_time_alone_is_in_an_incremental_export(
    bulk: httpx.AsyncClient, token_for: TokenFor, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A Coverage changes with no change in the registry when its affiliation's end passes
    (active -> cancelled): its lastUpdated says when, and `_since` before that moment
    exports it (the Patient, unchanged, does not go out again); `_since` after it does not."""
    curp, unchanged = await patient(bulk), await patient(bulk)
    changed_at = await _ended_by_time(sessions, curp)
    await _ended_by_time(sessions, unchanged)  # ...
    async with sessions() as session, session.begin():  # ...but ended long ago: not changed
        await session.execute(
            update(Affiliation)
            .where(Affiliation.person_id == select(Person.id).where(Person.curp == unchanged)
                   .scalar_subquery())
            .values(valid_to=date(2019, 6, 30))
        )  # fmt: skip
    reader = system(bulk, "his.issste", "system/*.read")
    before = fhir_instant(changed_at - timedelta(minutes=1)).replace("+", "%2B")
    after = fhir_instant(changed_at + timedelta(seconds=1))
    for url in ("/fhir/Patient/$export", "/fhir/$export", f"/fhir/Patient/{curp}/$export"):
        kicked = await bulk.get(f"{url}?_type=Patient,Coverage&_since={before}",
                                headers={**reader, **ASYNC})  # fmt: skip
        assert kicked.status_code == 202, kicked.text
        got = await files(bulk, await finished(bulk, kicked.headers["content-location"], reader),
                          reader)  # fmt: skip
        assert list(got) == ["Coverage"], url  # the Patient did not change
        [covered] = got["Coverage"]
        assert covered["beneficiary"]["reference"] == f"Patient/{curp}"
        assert covered["status"] == "cancelled"
        assert covered["meta"]["lastUpdated"] == fhir_instant(changed_at)
        later = await bulk.get(f"{url}?_type=Patient,Coverage&_since={after}",
                               headers={**reader, **ASYNC})  # fmt: skip
        done = await finished(bulk, later.headers["content-location"], reader)
        assert done["output"] == [], url
    # A read of the Coverage says the same.
    read = await bulk.get(f"/fhir/Coverage/{covered['id']}", headers=reader)
    assert read.json()["meta"] == covered["meta"]


async def test_a_job_deleted_in_another_process_stops_and_records_nothing_more(
    bulk: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """A DELETE answered by another process removes the job's folder but cannot cancel the
    task running here: the task sees its job.json gone at the next page and stops, with no
    audit entry for files that no longer exist and no job.json written again."""
    for _ in range(3):
        await patient(bulk)
    monkeypatch.setattr(export, "_PAGE", 1)  # one person per page
    root = tmp_path / "exports"
    page, run = export._page, export.run
    ended = asyncio.Event()

    async def page_then_deleted_elsewhere(*args: Any, **kwargs: Any) -> None:
        await page(*args, **kwargs)
        job = next(a for a in args if isinstance(a, export.Job))
        shutil.rmtree(root / job.id, ignore_errors=True)  # another process's DELETE

    async def run_and_tell(*args: Any) -> None:
        try:
            await run(*args)
        finally:
            ended.set()

    monkeypatch.setattr(export, "_page", page_then_deleted_elsewhere)
    monkeypatch.setattr(export, "run", run_and_tell)
    reader = system(bulk, "his.issste", "system/*.read")
    kicked = await bulk.get("/fhir/Patient/$export?_type=Patient", headers={**reader, **ASYNC})
    assert kicked.status_code == 202
    await asyncio.wait_for(ended.wait(), 60)
    job_id = kicked.headers["content-location"].rsplit("/", 1)[1]
    assert not (root / job_id).exists()
    assert job_id not in export._TASKS
    async with sessions() as session:
        exported = await session.scalars(
            select(AuditEvent.person_curp).where(AuditEvent.action == "records:Patient:export")
        )
        assert len(exported.all()) == 1  # the first page's person; then it stopped
    assert (await bulk.get(kicked.headers["content-location"], headers=reader)).status_code == 404


@pytest.mark.postgresql
async def test_pages_follow_the_databases_order_under_a_spanish_collation(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a database whose collation is not code-point order (ICU es-MX: `example` before
    `VEGA…`, upper and lower case together), each page of a system export ends where the
    database's order says: every person once, none repeated (code-point order put `VEGA…`
    in the page that ended at `example`, and the database's in the next one too)."""
    import psycopg

    from tests.conftest import PG_ADMIN

    name = f"salud_test_icu_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
            "ICU_LOCALE 'es-MX' LOCALE 'C.UTF-8'"
        )
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        app = create_app(
            settings.model_copy(update={"database_url": url, "export_dir": tmp_path / "ex"})
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                tokens = app.state.tokens
                supervisor = Principal("account:s", "supervisor", Role.SUPERVISOR, 2)
                client.headers["Authorization"] = f"Bearer {tokens.issue(supervisor)}"
                registered = []
                for surname in ("VEGA", "BRAVO"):  # CURPs that begin V and B
                    doc = person_doc(first_surname=surname)
                    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
                    registered.append(doc["curp"])
                outside = ["ex2", "example", "zeta", "a-1", "Mx.9", "n.0", "Z-z"]
                docs = [{"resourceType": "Patient", "id": i} for i in outside]
                docs.append(  # a registered person's record in the store, too
                    {"resourceType": "Observation", "status": "final", "code": {"text": "FC"},
                     "subject": {"reference": f"Patient/{registered[1]}"}}
                )  # fmt: skip
                lines = [(n, orjson.dumps(doc)) for n, doc in enumerate(docs, 1)]
                caller = Caller(
                    Principal("cli:p", "importacion:p", Role.CLIENT, 2,
                              scopes=frozenset({"system/*.read", "system/*.write"})),
                    app.state.audit,
                )  # fmt: skip
                loaded = await bulk_import.import_lines(app.state.sessions, caller, lines,
                                                        source="p")  # fmt: skip
                assert loaded.created == len(docs), loaded.rejects
                async with app.state.sessions() as session:  # the database's order is not ours
                    ordered = list(await session.scalars(text(
                        "SELECT k FROM unnest(CAST(:keys AS varchar[])) AS k ORDER BY k"
                    ), {"keys": registered + outside}))  # fmt: skip
                assert ordered != sorted(ordered)
                for page in (1, 2, 3):
                    monkeypatch.setattr(export, "_PAGE", page)
                    reader = system(client, "his.todo", "system/*.read")
                    kicked = await client.get("/fhir/Patient/$export?_type=Patient",
                                              headers={**reader, **ASYNC})  # fmt: skip
                    manifest = await finished(client, kicked.headers["content-location"], reader)
                    got = await files(client, manifest, reader)
                    ids = [p["id"] for p in got["Patient"]]
                    assert sorted(ids) == sorted(registered + outside), (page, ids)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
