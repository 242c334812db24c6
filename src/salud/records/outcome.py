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
