"""Numbers come back as written (FHIR: a decimal's precision is significant), whichever
path `loads` takes, and malformed JSON is refused as orjson refuses it."""

from __future__ import annotations

import pickle
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from salud.kit import exactjson

DIGITS = st.text("0123456789", min_size=1, max_size=25)


@st.composite
def number(draw: st.DrawFn) -> str:
    """Any JSON number (RFC 8259 §6) that a double can hold (orjson refuses the others)."""
    whole = draw(DIGITS).lstrip("0") or "0"
    text = ("-" if draw(st.booleans()) else "") + whole
    if draw(st.booleans()):
        text += "." + draw(DIGITS)
    if draw(st.booleans()):
        text += draw(st.sampled_from("eE")) + draw(st.sampled_from(["", "+", "-"]))
        text += str(draw(st.integers(0, 250)))
    return text


def document(numbers: list[str], words: list[str]) -> str:
    items = [f'"n{i}": {n}' for i, n in enumerate(numbers)]
    items += [f'"w{i}": {orjson.dumps(w).decode()}' for i, w in enumerate(words)]
    return "{" + ", ".join(items) + ', "list": [' + ", ".join(numbers) + "]}"


@given(st.lists(number(), min_size=1, max_size=6), st.lists(st.text(max_size=20), max_size=3))
def test_every_number_comes_back_as_it_was_written(numbers: list[str], words: list[str]) -> None:
    text = document(numbers, words)
    back = exactjson.dumps(exactjson.loads(text)).decode()
    assert orjson.loads(back) == orjson.loads(text)
    # As the bulk import's worker processes send documents back: pickled and unpickled.
    assert exactjson.dumps(pickle.loads(pickle.dumps(exactjson.loads(text)))).decode() == back
    for n in numbers:  # each number's own text is in the answer, where it stood
        assert f":{n}," in back or f":{n}}}" in back


@given(st.lists(number(), min_size=1, max_size=6))
def test_sorted_keys_keep_the_numbers_too(numbers: list[str]) -> None:
    text = document(numbers, [])
    back = exactjson.dumps(exactjson.loads(text), sort_keys=True).decode()
    assert back.startswith('{"list":[' + ",".join(numbers) + "]")
    assert list(orjson.loads(back)) == sorted(orjson.loads(text))


@pytest.mark.parametrize(
    "text", [b'{"a": 1.50,}', b'{"a": NaN}', b'{"a": Infinity}', b"[1e400]", b'["\\ud800"]',
             b"\xff", b'{"a": 01}']
)  # fmt: skip
def test_what_orjson_refuses_is_refused_on_either_path(text: bytes) -> None:
    with pytest.raises(exactjson.JSONDecodeError):
        exactjson.loads(text)


def test_a_document_without_fractions_is_orjsons_and_one_with_them_keeps_the_text() -> None:
    plain = exactjson.loads(b'{"valueInteger": 72, "date": "2026-01-05", "n": -10}')
    assert plain == orjson.loads(b'{"valueInteger": 72, "date": "2026-01-05", "n": -10}')
    assert type(plain["valueInteger"]) is int
    exact = exactjson.loads(b'{"valueQuantity": {"value": 1.50}}')["valueQuantity"]["value"]
    assert isinstance(exact, exactjson.Written)
    assert exact == Decimal("1.5")
    assert exact.text == "1.50"


def test_nesting_beyond_the_standard_library_is_refused_as_malformed() -> None:
    """orjson reads 1,010 levels; the exact path's parser cannot: a 400, never a crash."""
    deep = b'{"value": 1.5, "note": ' + b"[" * 1010 + b"]" * 1010 + b"}"
    orjson.loads(deep)
    with pytest.raises(exactjson.JSONDecodeError):
        exactjson.loads(deep)


def test_a_number_that_is_not_finite_is_never_written() -> None:
    with pytest.raises(TypeError):
        exactjson.dumps({"value": Decimal("NaN")})
