"""A clinician reads a person's data on a basis: care at their unit, the person's consent,
or a break-the-glass emergency access (reasoned, time-limited, reviewed, visible)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.permissions import Role
from tests.conftest import TokenFor
from tests.factories.persons import person_doc
from tests.identity.test_person_nearest_units import hidalgo_units  # noqa: F401 - fixture

pytestmark = pytest.mark.db

ISSSTE_UNIT = "DFIST000123"


async def _registered(client: httpx.AsyncClient) -> str:
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    return str(doc["curp"])


async def test_no_basis_no_read_then_care_at_my_unit(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await _registered(client)
    doctor = token_for(Role.CLINICIAN, username="dra.issste", institution=3, clues=ISSSTE_UNIT)
    refused = await anonymous.get(f"/api/v1/persons/{curp}", headers=doctor)
    assert refused.status_code == 403
    assert "urgencia" in refused.json()["detail"]

    reception = token_for(Role.VERIFIER, institution=3, clues=ISSSTE_UNIT)
    care = await anonymous.post(
        f"/api/v1/persons/{curp}/care-relationships", headers=reception, json={"hours": 2}
    )
    assert care.status_code == 201, care.text
    assert care.json()["clues"] == ISSSTE_UNIT
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=doctor)).status_code == 200
    # Care at one unit is not care at another unit of the same institution.
    elsewhere = token_for(Role.CLINICIAN, institution=3, clues="DFIST000999")
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=elsewhere)).status_code == 403


async def test_consent_granted_and_revoked_by_the_person(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await _registered(client)
    me = token_for(Role.CITIZEN, curp=curp)
    doctor = token_for(Role.CLINICIAN, institution=3, clues=ISSSTE_UNIT)
    granted = await anonymous.post(
        f"/api/v1/persons/{curp}/consents", headers=me, json={"institution_code": 3}
    )
    assert granted.status_code == 201, granted.text
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=doctor)).status_code == 200
    other_institution = token_for(Role.CLINICIAN, institution=4, clues="DFPMX000001")
    other = await anonymous.get(f"/api/v1/persons/{curp}", headers=other_institution)
    assert other.status_code == 403
    revoked = await anonymous.post(
        f"/api/v1/persons/{curp}/consents/{granted.json()['id']}/revoke", headers=me
    )
    assert revoked.json()["revoked_at"]
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=doctor)).status_code == 403
    listed = await anonymous.get(f"/api/v1/persons/{curp}/consents", headers=me)
    assert len(listed.json()) == 1


async def test_break_the_glass_is_reasoned_visible_and_reviewed(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await _registered(client)
    doctor = token_for(Role.CLINICIAN, username="dr.urgencias", institution=3, clues=ISSSTE_UNIT)
    short = await anonymous.post(
        f"/api/v1/persons/{curp}/emergency-access", headers=doctor, json={"reason": "urge"}
    )
    assert short.status_code == 422
    assert short.json()["errors"][0]["field"] == "reason"
    reason = "paciente inconsciente traído por ambulancia, sin acompañante"
    opened = await anonymous.post(
        f"/api/v1/persons/{curp}/emergency-access", headers=doctor, json={"reason": reason}
    )
    assert opened.status_code == 201, opened.text
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=doctor)).status_code == 200
    # Another clinician does not inherit it.
    colleague = token_for(Role.CLINICIAN, username="dr.otro", institution=3, clues=ISSSTE_UNIT)
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=colleague)).status_code == 403
    # Reception cannot break the glass.
    reception = token_for(Role.VERIFIER, institution=3, clues=ISSSTE_UNIT)
    assert (
        await anonymous.post(
            f"/api/v1/persons/{curp}/emergency-access", headers=reception, json={"reason": reason}
        )
    ).status_code == 403

    me = token_for(Role.CITIZEN, curp=curp)
    log = (await anonymous.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    reads = [
        e for e in log if e["actor"] == "dr.urgencias" and e["action"] == "identity:person:read"
    ]
    assert reads
    assert reads[0]["purpose"] == "emergency"
    assert reads[0]["reason"] == reason
    # The opening itself says why, even if the clinician then reads nothing.
    [opened] = [
        e for e in log if e["action"] == "access:emergency:open" and e["outcome"] == "success"
    ]
    assert (opened["purpose"], opened["reason"]) == ("emergency", reason)

    auditor = token_for(Role.AUDITOR)
    pending = (await anonymous.get("/api/v1/emergency-accesses", headers=auditor)).json()
    assert [p["curp"] for p in pending] == [curp]
    # A machine client that may read the audit log (its scopes) may not judge an access.
    reader = token_for(Role.CLIENT, scopes="system/*.read system/AuditEvent.read")
    url = f"/api/v1/emergency-accesses/{pending[0]['id']}/review"
    refused = await anonymous.post(url, headers=reader, json={"outcome": "justified"})
    assert refused.status_code == 403, refused.text
    reviewed = await anonymous.post(
        f"/api/v1/emergency-accesses/{pending[0]['id']}/review",
        headers=auditor,
        json={"outcome": "justified", "note": "urgencia real"},
    )
    assert reviewed.json()["review"] == "justified"
    assert (await anonymous.get("/api/v1/emergency-accesses", headers=auditor)).json() == []


async def test_out_of_range_numbers_are_422_not_database_errors(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await _registered(client)
    me = token_for(Role.CITIZEN, curp=curp)
    huge = 10**20
    answers = [
        await anonymous.post(
            f"/api/v1/persons/{curp}/consents", headers=me, json={"institution_code": 70000}
        ),
        await anonymous.post(f"/api/v1/persons/{curp}/consents/{huge}/revoke", headers=me),
        await anonymous.get(
            "/api/v1/audit/events", params={"before": huge}, headers=token_for(Role.AUDITOR)
        ),
        await anonymous.get("/api/v1/facilities", params={"offset": huge}, headers=me),
    ]
    assert [a.status_code for a in answers] == [422, 422, 422, 422]
    # An end without its zone was a 500 (the column keeps UTC); one already past was taken.
    for until in ("2030-01-01T00:00:00", "2001-01-01T00:00:00Z"):
        refused = await anonymous.post(
            f"/api/v1/persons/{curp}/consents", headers=me,
            json={"institution_code": 3, "valid_until": until},
        )  # fmt: skip
        assert refused.status_code == 422, (until, refused.text)
        assert refused.json()["errors"][0]["field"] == "valid_until"
    ahead = await anonymous.post(
        f"/api/v1/persons/{curp}/consents", headers=me,
        json={"institution_code": 3, "valid_until": "2030-01-01T00:00:00-06:00"},
    )  # fmt: skip
    assert ahead.status_code == 201, ahead.text


async def test_a_malformed_or_unregistered_curp_is_refused_by_name(
    anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A CURP of the wrong shape is a 422 naming it (it was a 500 on PostgreSQL, the value too
    long for its column); a well-formed CURP nobody has gets no care relationship and no
    emergency access (404), and that is told only to whom may ask."""
    reception = token_for(Role.VERIFIER, institution=3, clues=ISSSTE_UNIT)
    doctor = token_for(Role.CLINICIAN, username="dra.issste", institution=3, clues=ISSSTE_UNIT)
    me = token_for(Role.CITIZEN, curp="GODE561231HDFRRN09")
    long_one = "X" * 30
    for path, headers, body in (
        ("care-relationships", reception, {"hours": 2}),
        ("emergency-access", doctor, {"reason": "paciente inconsciente en urgencias"}),
        ("consents", me, {"institution_code": 2}),
    ):
        bad = await anonymous.post(f"/api/v1/persons/{long_one}/{path}", headers=headers,
                                   json=body)  # fmt: skip
        assert bad.status_code == 422, (path, bad.text)
        assert "curp" in bad.text
    nobody = person_doc()["curp"]  # well formed, never registered
    care = await anonymous.post(
        f"/api/v1/persons/{nobody}/care-relationships", headers=reception, json={"hours": 2}
    )
    assert care.status_code == 404
    emergency = await anonymous.post(
        f"/api/v1/persons/{nobody}/emergency-access", headers=doctor,
        json={"reason": "paciente inconsciente en urgencias"},
    )  # fmt: skip
    assert emergency.status_code == 404
    citizen = await anonymous.post(
        f"/api/v1/persons/{nobody}/care-relationships", headers=me, json={"hours": 2}
    )
    assert citizen.status_code == 403  # not 404: no permission, nothing told


async def test_a_care_relationship_a_clinician_gives_themselves_is_reviewed(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """Reception records the person's arrival; a clinician who records it reads on their own
    word, so the relationship waits for an auditor's review, as a broken glass does."""
    first, second = await _registered(client), await _registered(client)
    doctor = token_for(Role.CLINICIAN, username="dr.propio", institution=3, clues=ISSSTE_UNIT)
    reception = token_for(Role.VERIFIER, institution=3, clues=ISSSTE_UNIT)
    own = await anonymous.post(f"/api/v1/persons/{first}/care-relationships", headers=doctor,
                               json={"hours": 2})  # fmt: skip
    assert own.status_code == 201, own.text
    assert (own.json()["self_declared"], own.json()["created_by"]) == (True, "dr.propio")
    arrival = await anonymous.post(f"/api/v1/persons/{second}/care-relationships",
                                   headers=reception, json={"hours": 2})  # fmt: skip
    assert arrival.json()["self_declared"] is False
    assert (await anonymous.get(f"/api/v1/persons/{first}", headers=doctor)).status_code == 200

    auditor = token_for(Role.AUDITOR, username="auditora")
    pending = await anonymous.get("/api/v1/care-relationships", headers=auditor)
    assert [c["curp"] for c in pending.json()] == [first]  # reception's is not there
    assert (await anonymous.get("/api/v1/care-relationships", headers=doctor)).status_code == 403
    url = f"/api/v1/care-relationships/{own.json()['id']}/review"
    verdict = {"outcome": "unjustified", "note": "sin cita ni consulta"}
    reader = token_for(Role.CLIENT, scopes="system/*.read")  # reads the log, judges nothing
    assert (await anonymous.post(url, headers=reader, json=verdict)).status_code == 403
    done = await anonymous.post(url, headers=auditor, json=verdict)
    assert done.status_code == 200, done.text
    assert (done.json()["review"], done.json()["reviewed_by"]) == ("unjustified", "auditora")
    again = await anonymous.post(url, headers=auditor, json={"outcome": "justified"})
    assert again.status_code == 409
    other = f"/api/v1/care-relationships/{arrival.json()['id']}/review"
    assert (await anonymous.post(other, headers=auditor,
                                 json={"outcome": "justified"})).status_code == 404  # fmt: skip
    assert (await anonymous.get("/api/v1/care-relationships", headers=auditor)).json() == []
    # The person sees the review in "who looked at my data".
    log = (await anonymous.get(f"/api/v1/persons/{first}/accesses", headers=auditor)).json()
    assert ("auditora", "access:care:review") in {(e["actor"], e["action"]) for e in log["items"]}


async def test_break_the_glass_ends_after_its_hours(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, token_for: TokenFor,
    sessions: async_sessionmaker[AsyncSession],
) -> None:  # fmt: skip
    """Emergency access opens the record for EMERGENCY_HOURS only: a minute before the end
    the clinician still reads, after it the read is refused again."""
    from datetime import timedelta

    from sqlalchemy import update

    from salud.access.care import EMERGENCY_HOURS
    from salud.access.models import EmergencyAccess
    from salud.kit.clock import utcnow

    curp = await _registered(client)
    doctor = token_for(Role.CLINICIAN, username="dr.urgencias", institution=3, clues=ISSSTE_UNIT)
    reason = "paciente inconsciente traído por ambulancia, sin acompañante"
    opened = await anonymous.post(
        f"/api/v1/persons/{curp}/emergency-access", headers=doctor, json={"reason": reason}
    )
    assert opened.status_code == 201, opened.text
    async with sessions() as s:
        row = (await s.execute(select(EmergencyAccess))).scalar_one()
    assert row.expires_at - row.opened_at == timedelta(hours=EMERGENCY_HOURS)

    async def ends_in(delta: timedelta) -> int:
        async with sessions() as s, s.begin():
            await s.execute(update(EmergencyAccess).values(expires_at=utcnow() + delta))
        return (await anonymous.get(f"/api/v1/persons/{curp}", headers=doctor)).status_code

    assert await ends_in(timedelta(minutes=1)) == 200
    assert await ends_in(timedelta(seconds=-1)) == 403


async def test_a_fhir_read_by_id_finds_each_basis_as_the_registry_read_does(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """The hot FHIR read looks up the row and the clinician's basis in one statement: no
    basis is a 403, and care, consent and emergency each open it, recorded with their
    purpose (and the emergency's reason) in the person's access log."""
    curp = await _registered(client)
    writer = token_for(Role.CLINICIAN, username="dra.imss", institution=2, clues="HGIMS000010")
    await anonymous.post(
        f"/api/v1/persons/{curp}/care-relationships", headers=writer, json={"kind": "encounter"}
    )
    pulse = {"resourceType": "Observation", "status": "final", "code": {"text": "FC"},
             "subject": {"reference": f"Patient/{curp}"}}  # fmt: skip
    made = await anonymous.post("/fhir/Observation", headers=writer, json=pulse)
    assert made.status_code == 201, made.text
    url = f"/fhir/Observation/{made.json()['id']}"
    me = token_for(Role.CITIZEN, curp=curp)

    async def purposes(actor: str) -> list[tuple[str | None, str | None]]:
        log = (await anonymous.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()
        return [
            (e["purpose"], e["reason"])
            for e in log["items"]
            if e["actor"] == actor and e["action"] == "records:Observation:read"
            and e["outcome"] == "success"
        ]  # fmt: skip

    # Consent for ISSSTE: its clinician reads; another institution's does not.
    by_consent = token_for(Role.CLINICIAN, username="dr.consent", institution=3, clues=ISSSTE_UNIT)
    assert (await anonymous.get(url, headers=by_consent)).status_code == 403
    granted = await anonymous.post(
        f"/api/v1/persons/{curp}/consents", headers=me, json={"institution_code": 3}
    )
    assert granted.status_code == 201, granted.text
    assert (await anonymous.get(url, headers=by_consent)).status_code == 200
    assert await purposes("dr.consent") == [("consent", None)]

    # Emergency, for one clinician of another institution, with its reason.
    urgent = token_for(Role.CLINICIAN, username="dr.urg", institution=4, clues="DFPMX000001")
    assert (await anonymous.get(url, headers=urgent)).status_code == 403
    reason = "paciente inconsciente traído por ambulancia, sin acompañante"
    opened = await anonymous.post(
        f"/api/v1/persons/{curp}/emergency-access", headers=urgent, json={"reason": reason}
    )
    assert opened.status_code == 201, opened.text
    assert (await anonymous.get(url, headers=urgent)).status_code == 200
    assert await purposes("dr.urg") == [("emergency", reason)]

    # Care comes first when there are several: the writer's institution gets consent too,
    # and the writer still reads under care.
    also = await anonymous.post(
        f"/api/v1/persons/{curp}/consents", headers=me, json={"institution_code": 2}
    )
    assert also.status_code == 201, also.text
    assert (await anonymous.get(url, headers=writer)).status_code == 200
    assert await purposes("dra.imss") == [("care", None)]
    missing = await anonymous.get("/fhir/Observation/no-existe", headers=writer)
    assert missing.status_code == 404


async def test_the_bases_of_several_persons_at_once_are_each_ones_basis(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A clinician's Patient search asks the bases of all its matches in one statement
    (care.clinical_bases): the answer is, person by person, what clinical_basis says."""
    from salud.access import care
    from salud.access.principal import Principal

    cared, consented, urgent, nothing = [await _registered(client) for _ in range(4)]
    doctor = token_for(Role.CLINICIAN, username="dr.varios", institution=3, clues=ISSSTE_UNIT)
    reception = token_for(Role.VERIFIER, institution=3, clues=ISSSTE_UNIT)
    made = [
        await anonymous.post(
            f"/api/v1/persons/{cared}/care-relationships", headers=reception, json={"hours": 2}
        ),
        await anonymous.post(
            f"/api/v1/persons/{consented}/consents",
            headers=token_for(Role.CITIZEN, curp=consented), json={"institution_code": 3},
        ),
        await anonymous.post(
            f"/api/v1/persons/{urgent}/emergency-access", headers=doctor,
            json={"reason": "paciente inconsciente traído por ambulancia, sin acompañante"},
        ),
    ]  # fmt: skip
    assert [m.status_code for m in made] == [201, 201, 201]
    reader = client._transport.app.state.reader  # type: ignore[attr-defined]
    who = Principal("account:9", "dr.varios", Role.CLINICIAN, 3, ISSSTE_UNIT)
    curps = [nothing, urgent, cared, consented]
    one_by_one = {c: await care.clinical_basis(reader, who, c) for c in curps}
    assert await care.clinical_bases(reader, who, curps) == one_by_one
    # More than one statement's worth (50 a statement), the bases in the second one too.
    others = [f"XEXX{n:06d}HDFXXX0" for n in range(60)]
    many = [*others[:30], nothing, urgent, *others[30:], cared, consented]
    assert await care.clinical_bases(reader, who, many) == {**dict.fromkeys(others), **one_by_one}
    assert [one_by_one[c][0] if one_by_one[c] else None for c in curps] == [
        None, "emergency", "care", "consent"
    ]  # fmt: skip
    assert await care.clinical_bases(reader, who, []) == {}


@pytest.mark.usefixtures("hidalgo_units")
async def test_a_consent_names_a_real_institution_and_one_of_its_units(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """A typo in a consent would authorize nobody, or another institution, while the person
    believes their doctor may read: the institution must be in the DGIS catalog and the
    unit in the CLUES, and be that institution's."""
    curp = await _registered(client)
    me = token_for(Role.CITIZEN, curp=curp)
    url = f"/api/v1/persons/{curp}/consents"
    for body, field in (
        ({"institution_code": 88}, "institution_code"),  # «no especificado» names nobody
        ({"institution_code": 97}, "institution_code"),  # not in the catalog
        ({"institution_code": 3, "clues": "HGIST999999"}, "clues"),  # no such unit
        ({"institution_code": 3, "clues": "HGIMS000012"}, "clues"),  # an IMSS unit
        ({"institution_code": 7}, "institution_code"),  # Seguro Popular: no longer exists
        ({"institution_code": 8}, "institution_code"),  # «OTRA» names no one
        ({"institution_code": 3, "valid_until": "9999-12-31T23:59:59-06:00"}, "valid_until"),
    ):
        refused = await anonymous.post(url, headers=me, json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["errors"][0]["field"] == field
    assert (await anonymous.get(url, headers=me)).json() == []  # nothing recorded
    granted = await anonymous.post(
        url, headers=me, json={"institution_code": 3, "clues": "HGIST000012"}
    )
    assert granted.status_code == 201, granted.text
    # IMSS-Bienestar's units under either of its two codes (the regime and the OPD).
    for code in (10, 14):
        imb = await anonymous.post(
            url, headers=me, json={"institution_code": code, "clues": "HGIMB000011"}
        )
        assert imb.status_code == 201, (code, imb.text)
    # Whom may not grant learns nothing from the body: a 403 before any catalog check.
    other = token_for(Role.CITIZEN, curp=person_doc()["curp"])
    stranger = await anonymous.post(url, headers=other, json={"institution_code": 97})
    assert stranger.status_code == 403, stranger.text


async def test_a_consent_for_a_curp_not_registered_is_a_404(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """As care relationships and emergency access: nobody to consent for (a sign-in whose
    CURP the registry does not hold)."""
    curp = str(person_doc()["curp"])
    me = token_for(Role.CITIZEN, curp=curp)
    url = f"/api/v1/persons/{curp}/consents"
    refused = await anonymous.post(url, headers=me, json={"institution_code": 3})
    assert refused.status_code == 404, refused.text
    assert "registrada" in refused.json()["detail"]


@pytest.mark.usefixtures("hidalgo_units")
async def test_a_consent_to_imss_bienestar_holds_for_its_staff_under_either_code(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_for: TokenFor
) -> None:
    """IMSS-Bienestar is one institution under two DGIS codes (the regime, 10, and the OPD,
    14): a consent under one opens the record to its staff whichever code their account
    carries (it was accepted, and then read by nobody)."""
    curp = await _registered(client)
    me = token_for(Role.CITIZEN, curp=curp)
    body = {"institution_code": 10, "clues": "HGIMB000011"}
    assert (
        await anonymous.post(f"/api/v1/persons/{curp}/consents", headers=me, json=body)
    ).status_code == 201
    for code in (10, 14):
        doctor = token_for(Role.CLINICIAN, institution=code, clues="HGIMB000011")
        read = await anonymous.get(f"/api/v1/persons/{curp}", headers=doctor)
        assert read.status_code == 200, (code, read.text)
    elsewhere = token_for(Role.CLINICIAN, institution=2, clues="HGIMB000011")
    assert (await anonymous.get(f"/api/v1/persons/{curp}", headers=elsewhere)).status_code == 403
