"""Patient search over the registry (`GET /fhir/Patient?…`): by CURP or by surname and birth
date, never a list of everybody; a clinician sees only the persons they have a basis for;
every search and every person shown is audited; bad values are 400 naming the parameter."""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given
from hypothesis import strategies as st

from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.records import patient_search
from salud.records.mirror_query import Query, searchset
from salud.records.outcome import FhirError
from salud.records.patient import CURP_SYSTEM
from tests.conftest import TokenFor
from tests.factories.persons import person_doc
from tests.records.test_fhir_api import IMSS_UNIT, cared_for, clinician, outcome


def _doc(family: str, given: list[str], birth: str, gender: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "X", "name": [{"family": family, "given": given}],
            "birthDate": birth, "gender": gender}  # fmt: skip


# --- parsing and matching (pure) -----------------------------------------------------------

_SURNAMES = st.sampled_from(["Pérez", "Núñez", "García", "Ávila", "López", "Ibáñez", "De la O"])


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


@given(first=_SURNAMES, second=_SURNAMES, upper=st.booleans(), plain=st.booleans())
def test_family_matches_the_first_surname_whatever_the_case_and_accents(
    first: str, second: str, upper: bool, plain: bool
) -> None:
    doc = _doc(f"{first} {second}", ["Ana"], "1990-05-17", "female")
    asked = first.upper() if upper else first.lower()
    asked = _strip_accents(asked) if plain else asked
    query = [("family", asked), ("birthdate", "1990-05-17")]
    assert patient_search.holds(doc, patient_search.parse(query))
    whole = [("family", f"{first} {second}"), ("birthdate", "1990-05-17")]
    assert patient_search.holds(doc, patient_search.parse(whole))
    other_day = [("family", first), ("birthdate", "1990-05-18")]
    assert not patient_search.holds(doc, patient_search.parse(other_day))


@given(name=st.sampled_from(["María José", "José", "Ana Sofía"]), prefix=st.integers(1, 4))
def test_given_matches_the_start_of_any_given_name(name: str, prefix: int) -> None:
    doc = _doc("Pérez", name.split(), "1990-05-17", "female")
    for part in name.split():
        query = [("family", "Perez"), ("birthdate", "1990-05-17"), ("given", part[:prefix])]
        assert patient_search.holds(doc, patient_search.parse(query))
    wrong = [("family", "Perez"), ("birthdate", "1990-05-17"), ("given", "Xochitl")]
    assert not patient_search.holds(doc, patient_search.parse(wrong))


@given(
    names=st.lists(
        st.sampled_from(["family", "given", "gender", "_count", "_offset", "_format"]),
        max_size=4,
    )
)
def test_a_search_that_names_no_person_is_refused(names: list[str]) -> None:
    """Without the CURP, or the surname AND the birth date, no value gets through."""
    values = {"family": "Perez", "given": "Ana", "gender": "male", "_count": "5",
              "_offset": "0", "_format": "json"}  # fmt: skip
    with pytest.raises(FhirError) as refused:
        patient_search.parse([(n, values[n]) for n in names])
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ([("name", "Ana")], "name"),
        ([("family:exact", "Perez"), ("birthdate", "1990-01-01")], "family:exact"),
        ([("identifier", f"{CURP_SYSTEM}|")], "identifier"),
        ([("identifier", "NOESCURP")], "identifier"),
        ([("_id", "")], "_id"),
        ([("family", "Perez"), ("birthdate", "ge1990-01-01")], "birthdate"),
        ([("family", "Perez"), ("birthdate", "1990")], "birthdate"),
        ([("family", "Perez"), ("birthdate", "1990-02-30")], "birthdate"),
        ([("family", "Perez"), ("family", "Lopez"), ("birthdate", "1990-01-01")], "family"),
        ([("family", "123"), ("birthdate", "1990-01-01")], "family"),
        ([("_id", "X"), ("gender", "hombre")], "gender"),
        ([("_id", ",".join(["X"] * 51))], "_id"),
        ([("_id", "X"), ("_count", "0")], "_count"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(
    query: list[tuple[str, str]], named: str
) -> None:
    with pytest.raises(FhirError) as refused:
        patient_search.parse(query)
    assert refused.value.status == 400
    assert named in str(refused.value.issues[0].diagnostics)


def test_another_identifier_system_selects_nobody() -> None:
    assert patient_search.parse([("identifier", "urn:otro|123")]).ids == set()
    assert patient_search.parse([("identifier", "|123")]).ids == set()


# --- over HTTP ------------------------------------------------------------------------------


def _entries(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    bundle: dict[str, Any] = answer.json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    return list(bundle.get("entry", []))


def _machine(client: httpx.AsyncClient, scopes: set[str]) -> dict[str, str]:
    app_tokens: TokenService = client._transport.app.state.tokens  # type: ignore[attr-defined]
    his = Principal("client:his", "his.hospital", Role.CLIENT, 2, scopes=frozenset(scopes))
    return {"Authorization": f"Bearer {app_tokens.issue(his)}"}


@pytest.mark.db
async def test_search_by_curp_and_by_surname_and_birth_date(client: httpx.AsyncClient) -> None:
    doc = person_doc(first_surname="Núñez", given_names="María José", birth_date="1988-03-04",
                     sex="M")  # fmt: skip
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    curp = doc["curp"]
    by_identifier = _entries(
        await client.get(f"/fhir/Patient?identifier={quote(f'{CURP_SYSTEM}|{curp}')}")
    )
    assert [e["resource"]["id"] for e in by_identifier] == [curp]
    assert by_identifier[0]["search"]["mode"] == "match"
    for query in (f"_id={curp}", f"identifier={curp}"):
        found = _entries(await client.get(f"/fhir/Patient?{query}"))
        assert [e["resource"]["id"] for e in found] == [curp]
    elsewhere = await client.get(f"/fhir/Patient?identifier=urn:otro|{curp}")
    assert _entries(elsewhere) == []

    surname = await client.get("/fhir/Patient?family=nunez&birthdate=1988-03-04")
    assert curp in [e["resource"]["id"] for e in _entries(surname)]
    narrowed = await client.get("/fhir/Patient?family=NÚÑEZ&birthdate=1988-03-04&given=jos")
    assert curp in [e["resource"]["id"] for e in _entries(narrowed)]
    wrong_given = await client.get("/fhir/Patient?family=Nunez&birthdate=1988-03-04&given=Pedro")
    assert curp not in [e["resource"]["id"] for e in _entries(wrong_given)]
    wrong_gender = await client.get("/fhir/Patient?family=Nunez&birthdate=1988-03-04&gender=male")
    assert curp not in [e["resource"]["id"] for e in _entries(wrong_gender)]
    other_day = await client.get("/fhir/Patient?family=Nunez&birthdate=1988-03-05")
    assert curp not in [e["resource"]["id"] for e in _entries(other_day)]


@pytest.mark.db
async def test_paging_links_walk_every_match(client: httpx.AsyncClient) -> None:
    made = []
    for _ in range(3):
        doc = person_doc(first_surname="Zubiría", birth_date="1975-12-01")
        assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
        made.append(doc["curp"])
    seen: list[str] = []
    url: str | None = "/fhir/Patient?family=Zubiria&birthdate=1975-12-01&_count=2"
    while url:
        answer = await client.get(url)
        bundle = answer.json()
        assert bundle["total"] >= 3
        seen += [e["resource"]["id"] for e in _entries(answer)]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert set(made) <= set(seen)
    assert len(seen) == len(set(seen))  # no person twice across pages


@pytest.mark.db
async def test_refusals_are_operation_outcomes(client: httpx.AsyncClient) -> None:
    vague = await client.get("/fhir/Patient?family=Perez")
    assert vague.status_code == 400
    assert outcome(vague)["issue"][0]["code"] == "required"
    unknown = await client.get("/fhir/Patient?address=Pachuca&_id=X")
    assert unknown.status_code == 400
    assert "address" in outcome(unknown)["issue"][0]["diagnostics"]
    bad = await client.get("/fhir/Patient?identifier=GODE561231")
    assert bad.status_code == 400
    assert "identifier" in outcome(bad)["issue"][0]["diagnostics"]


@pytest.mark.db
async def test_who_may_search_and_what_a_clinician_sees(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    curp = doc["curp"]
    query = f"/fhir/Patient?_id={curp}"
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    withheld = await client.get(query, headers=doctor)
    assert withheld.json()["total"] == 0  # no basis yet: the person is not shown
    await cared_for(client, curp, doctor)
    assert [e["resource"]["id"] for e in _entries(await client.get(query, headers=doctor))] == [
        curp
    ]
    assert (await client.get(query, headers=token_for(Role.VERIFIER))).status_code == 403
    me = token_for(Role.CITIZEN, curp=curp)
    assert (await client.get(query, headers=me)).status_code == 403
    assert (await client.get(query, headers=token_for(Role.AUDITOR))).status_code == 403
    # A machine client: system/Patient.read searches and reads the Patient; other scopes not.
    his = _machine(client, {"system/Patient.read"})
    assert [e["resource"]["id"] for e in _entries(await client.get(query, headers=his))] == [curp]
    read = await client.get(f"/fhir/Patient/{curp}", headers=his)
    assert read.status_code == 200, read.text
    assert read.json()["id"] == curp
    lab = _machine(client, {"system/Observation.read"})
    assert (await client.get(query, headers=lab)).status_code == 403
    assert (await client.get(f"/fhir/Patient/{curp}", headers=lab)).status_code == 403

    log = (await client.get(f"/api/v1/persons/{curp}/accesses", headers=me)).json()["items"]
    shown = {e["actor"] for e in log if e["action"] == "records:Patient:search"}
    assert shown == {"medica.imss", "his.hospital"}  # one entry per person disclosed
    reads = {(e["actor"], e["outcome"]) for e in log if e["action"] == "records:Patient:read"}
    assert reads == {("his.hospital", "success"), ("his.hospital", "denied")}


@pytest.mark.db
async def test_the_capability_statement_declares_the_patient_search(
    client: httpx.AsyncClient,
) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"code": "search-type"} in patient["interaction"]
    assert {p["name"] for p in patient["searchParam"]} == set(patient_search.PARAMS)


@pytest.mark.db
async def test_search_modifiers_are_refused_by_name_not_a_500(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doc = person_doc()
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    curp = doc["curp"]
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    await cared_for(client, curp, doctor)
    for query in ("code:text=diabetes", "subject:Patient=" + curp, "date:missing=false"):
        answer = await client.get(f"/fhir/Condition?patient={curp}&{query}", headers=doctor)
        assert answer.status_code == 400, query
        assert query.split("=")[0] in outcome(answer)["issue"][0]["diagnostics"]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Condition?patient={curp}&code:text=x"}},
        {"request": {"method": "GET", "url": f"Condition?patient={curp}"}},
    ]}  # fmt: skip
    answer = await client.post("/fhir", json=batch, headers=doctor)
    assert answer.status_code == 200, answer.text
    statuses = [e["response"]["status"] for e in answer.json()["entry"]]
    assert statuses[0].startswith("400")
    assert statuses[1].startswith("200")


def test_no_next_link_points_past_the_deepest_page() -> None:
    from salud.records.mirror_query import MAX_OFFSET

    for offset, count, total, has_next in ((0, 50, 51, True), (MAX_OFFSET - 100, 100, 10**6, True),
                                           (MAX_OFFSET - 50, 100, 10**6, False)):  # fmt: skip
        bundle = searchset("http://x/fhir", "Location", [], Query("Location", count, offset),
                           total, [], [])  # fmt: skip
        nexts = [link for link in bundle["link"] if link["relation"] == "next"]
        assert bool(nexts) == has_next, (offset, count)
    with pytest.raises(FhirError):
        patient_search.parse([("_id", "X"), ("_offset", str(MAX_OFFSET + 1))])


@pytest.mark.db
async def test_include_outside_a_persons_record_is_refused_not_dropped(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.imss")
    for url in ("/fhir/PractitionerRole?_include=PractitionerRole:practitioner",
                "/fhir/Practitioner?_revinclude=PractitionerRole:practitioner"):  # fmt: skip
        answer = await client.get(url, headers=doctor)
        assert answer.status_code == 400, url
        assert "patient=" in outcome(answer)["issue"][0]["diagnostics"]
    statement = (await client.get("/fhir/metadata")).json()
    kinds = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert kinds["PractitionerRole"]["searchInclude"] == []
    assert kinds["Observation"]["searchInclude"]


@pytest.mark.db
async def test_a_first_surname_of_several_words_is_found(client: httpx.AsyncClient) -> None:
    doc = person_doc(first_surname="De la Cruz", second_surname="Pérez", birth_date="1980-02-03")
    assert (await client.post("/api/v1/persons", json=doc)).status_code == 201
    for family in ("De la Cruz", "de la cruz pérez", "DE LA CRUZ PEREZ"):
        found = await client.get("/fhir/Patient", params={"family": family,
                                                          "birthdate": "1980-02-03"})  # fmt: skip
        assert doc["curp"] in [e["resource"]["id"] for e in _entries(found)], family
    partial = await client.get("/fhir/Patient", params={"family": "De la",
                                                         "birthdate": "1980-02-03"})  # fmt: skip
    assert doc["curp"] not in [e["resource"]["id"] for e in _entries(partial)]
