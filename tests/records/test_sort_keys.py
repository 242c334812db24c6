"""`_sort` as parsed (pure): every parameter of the type, `_id` and `_lastUpdated`, in the
order written, `-` for descending; anything else is a 400 at `_sort` naming it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salud.records.indexing import PARAMS, SortKey, sort_keys
from salud.records.outcome import FhirError

KINDS = sorted(PARAMS)


@st.composite
def written(draw: st.DrawFn) -> tuple[str, list[tuple[str, bool]]]:
    kind = draw(st.sampled_from(KINDS))
    names = sorted({"_id", "_lastUpdated", *PARAMS[kind]})
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
    return kind, [(name, draw(st.booleans())) for name in chosen]


@given(written())
def test_the_keys_are_what_was_written_in_order(case: tuple[str, list[tuple[str, bool]]]) -> None:
    kind, keys = case
    raw = ",".join(("-" if down else "") + name for name, down in keys)
    parsed = sort_keys(raw, PARAMS[kind])
    assert [(k.param, k.descending) for k in parsed] == keys
    for key in parsed:
        expected = key.param if key.param.startswith("_") else PARAMS[kind][key.param].kind
        assert key.kind == expected


@given(st.sampled_from(KINDS), st.text(min_size=1, max_size=12))
def test_a_name_that_is_not_a_parameter_is_refused_by_name(kind: str, name: str) -> None:
    if name.lstrip("-") in {"_id", "_lastUpdated", *PARAMS[kind]} or "," in name:
        return
    with pytest.raises(FhirError) as refused:
        sort_keys(f"_id,{name}", PARAMS[kind])
    issue = refused.value.issues[0]
    assert refused.value.status == 400
    assert issue.expression == "_sort"
    assert f"«{name}»" in issue.diagnostics


def test_a_key_twice_is_refused_whatever_its_direction() -> None:
    with pytest.raises(FhirError) as refused:
        sort_keys("date,-date", PARAMS["Observation"])
    assert "date" in refused.value.issues[0].diagnostics
    assert sort_keys("-date", PARAMS["Observation"]) == (SortKey("date", "date", True),)
