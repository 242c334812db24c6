"""The calendar and the document checklist: pure rules, checked by examples and properties."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from salud.enrollment.calendar import (
    LETTERS,
    Calendar,
    Phase,
    Rule,
    age_on,
    letter_set,
    state_open,
    weekday_open,
)
from salud.enrollment.documents import (
    ADULT,
    MINOR,
    Document,
    DocumentKind,
    checklist,
    months_before,
)

VISIT = date(2026, 12, 1)
ADULT_BIRTH = date(1980, 5, 17)
MINOR_BIRTH = date(2015, 2, 3)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))


# --- calendar -------------------------------------------------------------------------------


def test_letter_ranges() -> None:
    assert letter_set("A-C,M,X-Z") == frozenset("ABCMXYZ")
    assert letter_set("A-Z") == frozenset(LETTERS)
    for bad in ("", "a-c", "A-", "C-A", "A,,B", "Ñ"):
        with pytest.raises(ValueError, match=r"\w"):
            letter_set(bad)


@given(st.text(alphabet=LETTERS, min_size=1, max_size=2).map(lambda s: "-".join(sorted(s))))
def test_a_range_holds_exactly_the_letters_between_its_ends(spec: str) -> None:
    first, last = spec[0], spec[-1]
    got = letter_set(spec)
    assert got == {c for c in LETTERS if first <= c <= last}


@given(dates, dates)
def test_age_counts_completed_years(birth: date, day: date) -> None:
    age = age_on(birth, day)
    if day >= birth:
        assert age >= 0
        # The birthday in the year `age` years on has passed; the next one has not.
        assert (birth.year + age, birth.month, birth.day) <= (day.year, day.month, day.day)
        assert (birth.year + age + 1, birth.month, birth.day) > (day.year, day.month, day.day)


def test_rule_refuses_what_makes_no_sense() -> None:
    with pytest.raises(ValidationError, match="ends_on"):
        Rule(starts_on=date(2026, 2, 1), ends_on=date(2026, 1, 1))
    with pytest.raises(ValidationError, match="max_age"):
        Rule(starts_on=VISIT, ends_on=VISIT, min_age=60, max_age=18)
    with pytest.raises(ValidationError):
        Rule(starts_on=VISIT, ends_on=VISIT, letters="a-z")


def test_older_adults_first_then_by_letter() -> None:
    calendar = Calendar(
        name="mayores primero",
        rules=[
            Rule(starts_on=date(2026, 12, 1), ends_on=date(2026, 12, 6), min_age=60),
            Rule(starts_on=date(2026, 12, 7), ends_on=date(2026, 12, 13), letters="A-M"),
            Rule(starts_on=date(2026, 12, 14), ends_on=date(2026, 12, 20), letters="N-Z"),
        ],
    )
    senior, young = date(1950, 1, 1), date(1990, 1, 1)
    assert calendar.allows("Z", senior, date(2026, 12, 2))
    assert not calendar.allows("A", young, date(2026, 12, 2))
    assert calendar.allows("A", young, date(2026, 12, 8))
    assert not calendar.allows("N", young, date(2026, 12, 8))
    assert calendar.days_for("P", young, date(2026, 12, 1), date(2026, 12, 31)) == [
        date(2026, 12, 14) + timedelta(days=i) for i in range(7)
    ]
    # Someone turning 60 during the first week may come from the birthday on.
    turning = date(1966, 12, 4)
    assert not calendar.allows("Q", turning, date(2026, 12, 3))
    assert calendar.allows("Q", turning, date(2026, 12, 4))


rules = st.builds(
    Rule,
    starts_on=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 6, 30)),
    ends_on=st.dates(min_value=date(2026, 7, 1), max_value=date(2026, 12, 31)),
    letters=st.sampled_from(["A-Z", "A-F", "G-M", "N-Z", "A,E,I,O,U"]),
    min_age=st.integers(0, 60),
    max_age=st.integers(60, 130),
)


@given(st.lists(rules, min_size=1, max_size=5), st.sampled_from(LETTERS), dates, dates)
def test_a_calendar_allows_a_day_iff_some_rule_covers_it(
    found: list[Rule], letter: str, birth: date, day: date
) -> None:
    calendar = Calendar(name="x", rules=found)
    expected = any(
        r.starts_on <= day <= r.ends_on
        and r.min_age <= age_on(birth, day) <= r.max_age
        and letter in letter_set(r.letters)
        for r in found
    )
    assert calendar.allows(letter, birth, day) is expected


def test_phases_and_weekdays() -> None:
    phases = [
        Phase(name="1", starts_on=date(2026, 11, 1), states=["09", "13"]),
        Phase(name="2", starts_on=date(2027, 1, 15), ends_on=date(2027, 6, 30), states=["07"]),
    ]
    assert state_open(phases, "09", VISIT)
    assert not state_open(phases, "07", VISIT)
    assert state_open(phases, "07", date(2027, 1, 15))
    assert not state_open(phases, "07", date(2027, 7, 1))
    assert weekday_open("12345", date(2026, 11, 30))  # a Monday
    assert not weekday_open("12345", date(2026, 12, 6))  # a Sunday
    with pytest.raises(ValidationError):
        Phase(name="x", starts_on=VISIT, states=["33"])
    with pytest.raises(ValidationError, match="states"):
        Phase(name="vacía", starts_on=VISIT)


def test_a_phase_may_open_single_municipalities() -> None:
    region = Phase(name="Valle del Mezquital", starts_on=VISIT, municipalities=["13030", "13041"])
    assert state_open([region], "13", VISIT, "030")
    assert not state_open([region], "13", VISIT, "048")  # Pachuca is not in the region
    assert not state_open([region], "13", VISIT)  # a module without municipality: no
    assert not state_open([region], "14", VISIT, "030")  # same municipality key, other state
    with pytest.raises(ValidationError):
        Phase(name="x", starts_on=VISIT, municipalities=["1304"])


# --- documents ------------------------------------------------------------------------------


def _docs(*kinds: DocumentKind, address_on: date | None = None) -> list[Document]:
    return [
        Document(kind=k, issued_on=address_on if k is DocumentKind.ADDRESS_PROOF else None)
        for k in kinds
    ]


def test_an_adult_with_every_document_passes() -> None:
    docs = _docs(*ADULT, address_on=date(2026, 10, 15))
    assert checklist(ADULT_BIRTH, VISIT, docs) == []


def test_each_missing_adult_document_is_named() -> None:
    for absent in ADULT:
        docs = _docs(*(k for k in ADULT if k is not absent), address_on=date(2026, 10, 1))
        found = checklist(ADULT_BIRTH, VISIT, docs)
        assert [(m.kind, m.reason) for m in found] == [(absent, "falta")]


def test_address_proof_older_than_six_months_is_stale() -> None:
    fresh = _docs(*ADULT, address_on=date(2026, 6, 1))  # exactly six months: still valid
    assert checklist(ADULT_BIRTH, VISIT, fresh) == []
    stale = checklist(ADULT_BIRTH, VISIT, _docs(*ADULT, address_on=date(2026, 5, 31)))
    assert len(stale) == 1
    assert stale[0].kind is DocumentKind.ADDRESS_PROOF
    assert "más de 6 meses" in stale[0].reason
    undated = checklist(ADULT_BIRTH, VISIT, _docs(*ADULT))
    assert "fecha" in undated[0].reason
    future = checklist(ADULT_BIRTH, VISIT, _docs(*ADULT, address_on=date(2026, 12, 2)))
    assert "posterior" in future[0].reason


def test_a_minor_needs_birth_certificate_curp_and_guardian_id() -> None:
    assert checklist(MINOR_BIRTH, VISIT, _docs(*MINOR)) == []
    adult_papers = checklist(MINOR_BIRTH, VISIT, _docs(*ADULT, address_on=VISIT))
    assert {m.kind for m in adult_papers} == {
        DocumentKind.BIRTH_CERTIFICATE,
        DocumentKind.GUARDIAN_ID,
    }
    # The 18th birthday is the day the adult list applies.
    eighteen = date(2008, 12, 1)
    assert checklist(eighteen, VISIT, _docs(*ADULT, address_on=VISIT)) == []
    assert checklist(date(2008, 12, 2), VISIT, _docs(*MINOR)) == []


def test_a_waived_document_no_longer_blocks() -> None:
    docs = _docs(DocumentKind.PHOTO_ID, DocumentKind.CURP)
    assert [m.kind for m in checklist(ADULT_BIRTH, VISIT, docs)] == [DocumentKind.ADDRESS_PROOF]
    waived = frozenset({DocumentKind.ADDRESS_PROOF})
    assert checklist(ADULT_BIRTH, VISIT, docs, waived) == []


@given(dates.filter(lambda d: d.year > 1901), st.integers(0, 24))
def test_months_before_stays_in_the_right_month(day: date, months: int) -> None:
    earlier = months_before(day, months)
    assert (day.year * 12 + day.month) - (earlier.year * 12 + earlier.month) == months
    assert earlier.day <= day.day
    assert earlier <= day


@given(
    st.sets(st.sampled_from(list(DocumentKind))),
    st.dates(min_value=date(2025, 1, 1), max_value=date(2026, 12, 1)),
    st.sampled_from([ADULT_BIRTH, MINOR_BIRTH]),
)
def test_the_checklist_blocks_exactly_when_something_required_is_absent_or_stale(
    kinds: set[DocumentKind], address_on: date, birth: date
) -> None:
    docs = _docs(*kinds, address_on=address_on)
    required = MINOR if birth == MINOR_BIRTH else ADULT
    stale = address_on < months_before(VISIT, 6)
    expect_ok = all(k in kinds for k in required) and not (
        DocumentKind.ADDRESS_PROOF in required and stale
    )
    assert (checklist(birth, VISIT, docs) == []) is expect_ok
