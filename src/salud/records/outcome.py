"""FHIR errors as OperationOutcome (R4 §2.38): the issue's code says what kind of problem,
`expression` says which element, `diagnostics` says why, in Spanish."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    code: str  # invalid, structure, required, value, not-found, code-invalid, conflict, …
    diagnostics: str
    expression: str | None = None
    severity: str = "error"


class FhirError(Exception):
    """A FHIR request refused with an HTTP status and an OperationOutcome."""

    def __init__(self, status: int, issues: list[Issue]) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues))
        self.status = status
        self.issues = issues

    @classmethod
    def one(
        cls, status: int, code: str, diagnostics: str, expression: str | None = None
    ) -> FhirError:
        return cls(status, [Issue(code, diagnostics, expression)])


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for i in issues:
        item: dict[str, Any] = {
            "severity": i.severity,
            "code": i.code,
            "diagnostics": i.diagnostics,
        }
        if i.expression:
            item["expression"] = [i.expression]
        out.append(item)
    return {"resourceType": "OperationOutcome", "issue": out}


def is_number(raw: str, max_digits: int = 18) -> bool:
    """ASCII digits only, and few enough for a 64-bit column: `str.isdigit()` alone also
    accepts "²" and other digits that `int()` refuses (that was a 500)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= max_digits


def bounded_int(raw: str, name: str, low: int, high: int) -> int:
    """A query parameter that must be an integer from `low` to `high`, or a 400 naming it."""
    if not is_number(raw) or not low <= int(raw) <= high:
        raise FhirError.one(400, "invalid", f"{name} debe ser un entero de {low} a {high}")
    return int(raw)
