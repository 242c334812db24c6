"""Required bindings: a status outside its FHIR value set is refused, naming the element."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from salud.records.bindings import CODES, CONCEPTS, binding_issues
from salud.records.outcome import FhirError
from salud.records.validation import validate
from tests.conftest import TokenFor
from tests.records.test_fhir_api import IMSS_UNIT, cared_for, clinician, condition, patient

CODE_ELEMENTS = sorted(CODES)
CONCEPT_ELEMENTS = sorted(CONCEPTS)


@given(st.sampled_from(CODE_ELEMENTS), st.data())
def test_a_code_is_accepted_exactly_when_its_value_set_has_it(
    element: tuple[str, str], data: st.DataObject
) -> None:
    kind, name = element
    allowed = CODES[element]
    value = data.draw(st.one_of(st.sampled_from(sorted(allowed)), st.text(max_size=20)))
    issues = binding_issues({"resourceType": kind, name: value})
    assert (issues == []) == (value in allowed)
    if issues:
        assert issues[0].expression == f"{kind}.{name}"
        assert issues[0].code == "code-invalid"


@given(st.sampled_from(CONCEPT_ELEMENTS), st.text(max_size=20), st.text(max_size=30))
def test_a_concept_is_checked_only_in_its_value_sets_system(
    element: tuple[str, str], code: str, other_system: str
) -> None:
    kind, name = element
    system, allowed = CONCEPTS[element]
    own = {"resourceType": kind, name: {"coding": [{"system": system, "code": code}]}}
    assert (binding_issues(own) == []) == (code in allowed)
    if other_system != system:  # another system's coding is not ours to judge
        foreign = {"resourceType": kind, name: {"coding": [{"system": other_system, "code": code}]}}
        assert binding_issues(foreign) == []


def test_the_model_alone_would_accept_an_unknown_status() -> None:
    """Why the table exists: the R4B model checks only a code's grammar."""
    from fhir.resources.R4B import get_fhir_model_class

    doc = {"resourceType": "Observation", "status": "terminada", "code": {"text": "x"}}
    get_fhir_model_class("Observation").model_validate(doc)  # no error
    with pytest.raises(FhirError) as refused:
        validate(doc)
    assert refused.value.status == 400
    assert refused.value.issues[0].expression == "Observation.status"


@pytest.mark.db
async def test_the_api_refuses_an_unknown_status_and_clinical_status(
    client: httpx.AsyncClient, token_for: TokenFor
) -> None:
    curp = await patient(client)
    doctor = clinician(token_for, 2, IMSS_UNIT, "medica.bindings")
    await cared_for(client, curp, doctor)
    vital = {"resourceType": "Observation", "status": "terminada", "code": {"text": "Pulso"},
             "subject": {"reference": f"Patient/{curp}"}}  # fmt: skip
    refused = await client.post("/fhir/Observation", json=vital, headers=doctor)
    assert refused.status_code == 400
    issue = refused.json()["issue"][0]
    assert issue["code"] == "code-invalid"
    assert issue["expression"] == ["Observation.status"]
    diagnosis = condition(curp)
    diagnosis["clinicalStatus"]["coding"][0]["code"] = "curado"
    refused = await client.post("/fhir/Condition", json=diagnosis, headers=doctor)
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["Condition.clinicalStatus.coding[0].code"]
    vital["status"] = "final"
    assert (await client.post("/fhir/Observation", json=vital, headers=doctor)).status_code == 201
