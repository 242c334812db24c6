"""Factories of synthetic persons (never real people)."""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta
from typing import Any

from salud.identity import curp

_GIVEN = ["JUANA", "PEDRO", "LUCÍA", "ÁNGEL", "MARÍA JOSÉ", "JOSÉ LUIS", "XÓCHITL", "IÑAKI"]
_SURNAMES = ["PÉREZ", "LÓPEZ", "NÚÑEZ", "DE LA CRUZ", "HERNÁNDEZ", "OCHOA", "YÁÑEZ", "ÁVILA"]
_counter = itertools.count()


def person_doc(**overrides: Any) -> dict[str, Any]:
    """A valid registration document; each call gives a different CURP."""
    n = next(_counter)
    rng = random.Random(n)
    birth = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 49))
    given = overrides.pop("given_names", rng.choice(_GIVEN))
    first = overrides.pop("first_surname", rng.choice(_SURNAMES))
    second = overrides.pop("second_surname", rng.choice(_SURNAMES))
    sex = overrides.pop("sex", rng.choice("HM"))
    state = overrides.pop("birth_state", "HG")
    given_birth = overrides.pop("birth_date", None)
    if given_birth is not None:
        birth = date.fromisoformat(given_birth) if isinstance(given_birth, str) else given_birth
    differentiator = str(n % 10) if birth.year < 2000 else "ABCDEFGHIJ"[n % 10]
    doc: dict[str, Any] = {
        "curp": curp.generate(given, first, second, birth, sex, state, differentiator),
        "given_names": given,
        "first_surname": first,
        "second_surname": second,
        "birth_date": birth.isoformat(),
        "sex": sex,
        "blood_type": "O+",
        "address": {
            "state": "13",
            "municipality": "048",
            "locality": "0001",
            "postal_code": "42000",
        },
        "affiliations": [
            {"institution_code": 2, "member_number": f"{n:011d}", "valid_from": "2015-03-01"}
        ],
    }
    doc.update(overrides)
    return doc
