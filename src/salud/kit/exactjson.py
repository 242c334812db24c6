"""JSON whose numbers come back as they were written.

FHIR says a decimal's precision is significant: a creatinine of `1.50` mg/dL is not `1.5`
(R4 §2.1.27.0.2, `decimal`). Parsed into a float, `1.50` would be written back `1.5`, `2e3`
as `2000.0` and a 20-digit number rounded. So `loads` reads such numbers as `Decimal` (which
keeps the digits and the exponent) and `dumps` writes a `Decimal` back as its own text.

Most documents hold no fraction or exponent (nor an integer beyond 64 bits, which orjson
reads as a float): for them orjson alone is exact, and `loads` returns its answer. A document
with a float in it is read again by the standard library with every such number as a
`Written` (a Decimal that keeps its text). `tests/kit/test_exactjson.py` checks by
Hypothesis that every number text comes back as written, on either path."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError

# "-0" reads as the int 0 (the only integer orjson changes within 64 bits). Dates ("-01")
# are not matched: a digit follows.
_MINUS_ZERO = re.compile(rb"-0(?![.0-9eE])")


def _has_float(doc: Any) -> bool:
    stack = [doc]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind is float:
            return True
    return False


class Written(Decimal):
    """A number read from JSON text, which it keeps: `str(Decimal("0.0000001"))` is `1E-7`,
    the same number, but not the text the writer sent."""

    text: str

    def __new__(cls, text: str) -> Written:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __reduce__(self) -> tuple[type[Written], tuple[str]]:
        # Pickled by its text (the bulk import's worker processes send documents back): the
        # Decimal's own reduction would rebuild it from str(), 2e3 coming back as 2E+3.
        return Written, (self.text,)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # orjson refused it already; never reached


def _integer(text: str) -> int | Written:
    # Beyond 64 bits orjson can neither read nor write an int, and an int has no minus zero.
    return int(text) if len(text) < 19 and text != "-0" else Written(text)


def loads(data: bytes | str) -> Any:
    """orjson.loads, with every number that a float would change read as a Decimal.
    Malformed JSON raises orjson.JSONDecodeError, whichever path is taken."""
    raw = data.encode() if isinstance(data, str) else data
    doc = orjson.loads(raw)  # the validation and, most often, the answer
    if not _has_float(doc) and _MINUS_ZERO.search(raw) is None:
        return doc
    try:
        return json.loads(raw, parse_float=Written, parse_int=_integer, parse_constant=_no_constant)
    except (RecursionError, ValueError, ArithmeticError) as exc:
        # orjson nests up to 1024 levels, the standard library ~1000: a document between the
        # two is refused as malformed here too, never an uncaught error.
        text = raw.decode(errors="replace")
        raise JSONDecodeError(f"no se pudo leer ({type(exc).__name__})", text, 0) from None


def _exact(value: Any) -> Any:
    if isinstance(value, Written):
        return orjson.Fragment(value.text)
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(doc: Any, *, sort_keys: bool = False) -> bytes:
    """orjson.dumps, writing a Decimal as the number it was read from."""
    option = orjson.OPT_SORT_KEYS if sort_keys else None
    return orjson.dumps(doc, default=_exact, option=option)
