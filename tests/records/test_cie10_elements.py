"""CIE-10 codes are checked wherever a diagnosis is coded, nested elements included, and the
refusal names the element's path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salud.records.outcome import FhirError
from salud.records.validation import DIAGNOSIS_ELEMENTS, _check_codes

ICD10 = "http://hl7.org/fhir/sid/icd-10"


def _coded(code: str) -> dict[str, Any]:
    return {"coding": [{"system": ICD10, "code": code}]}


def test_a_relatives_condition_and_a_claims_diagnosis_are_checked() -> None:
    history = {"resourceType": "FamilyMemberHistory",
               "condition": [{"code": _coded("E11.9")}, {"code": _coded("Q99.99")}]}  # fmt: skip
    with pytest.raises(FhirError) as refused:
        _check_codes(history)
    assert (
        refused.value.issues[0].expression == "FamilyMemberHistory.condition[1].code.coding[0].code"
    )
    claim = {"resourceType": "Claim",
             "diagnosis": [{"diagnosisCodeableConcept": _coded("Q99.99")}]}  # fmt: skip
    with pytest.raises(FhirError):
        _check_codes(claim)
    _check_codes({**history, "condition": [{"code": _coded("E11.9")}]})  # known: accepted


@given(
    kind=st.sampled_from(sorted(DIAGNOSIS_ELEMENTS)),
    known=st.booleans(),
    repeated=st.booleans(),
)
def test_every_listed_element_is_checked(kind: str, known: bool, repeated: bool) -> None:
    """Each path of DIAGNOSIS_ELEMENTS, built as a list or a single value at each step."""
    for path in DIAGNOSIS_ELEMENTS[kind]:
        node: Any = _coded("E11.9" if known else "Q99.99")
        for part in reversed(path.split(".")):
            node = {part: [node] if repeated else node}
        doc = {"resourceType": kind, **node}
        if known:
            _check_codes(doc)
        else:
            with pytest.raises(FhirError) as refused:
                _check_codes(doc)
            assert refused.value.status == 422
            assert refused.value.issues[0].expression.startswith(f"{kind}.{path.split('.')[0]}")
