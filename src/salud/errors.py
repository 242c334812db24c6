"""The error tree of the domains. Each carries its HTTP status; adapters render them once.

API errors are RFC 9457 problem details; every error that comes from bad input names the
field and the reason, so a client can fix the request without guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    reason: str


@dataclass
class DomainError(Exception):
    """Base of every expected failure. Unexpected ones are bugs and become 500s."""

    detail: str
    problems: list[FieldProblem] = field(default_factory=list)
    status: int = 400
    title: str = "Solicitud inválida"
    type_slug: str = "bad-request"

    def __str__(self) -> str:
        return self.detail


class InvalidInput(DomainError):
    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail, problems or [], 422, "Datos inválidos", "invalid-input")

    @classmethod
    def on(cls, field_name: str, reason: str) -> InvalidInput:
        return cls(f"{field_name}: {reason}", [FieldProblem(field_name, reason)])


class NotFound(DomainError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, [], 404, "No encontrado", "not-found")


class Unauthorized(DomainError):
    """No valid credentials (401): sign in first."""

    def __init__(self, detail: str = "se requiere autenticación") -> None:
        super().__init__(detail, [], 401, "No autenticado", "unauthorized")


class Forbidden(DomainError):
    """Valid credentials, but not allowed (403)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, [], 403, "Prohibido", "forbidden")


class Conflict(DomainError):
    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail, problems or [], 409, "Conflicto", "conflict")


class PreconditionFailed(DomainError):
    """Optimistic concurrency: the caller edited a version that is no longer current."""

    def __init__(self, detail: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail, problems or [], 412, "Versión desactualizada", "stale-version")


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.-]*): (.+)$", re.DOTALL)


# pydantic's built-in messages are English; the API speaks Spanish. Types not listed keep
# pydantic's message (still naming the field).
_SPANISH: dict[str, str] = {
    "missing": "es obligatorio",
    "extra_forbidden": "campo desconocido",
    "string_type": "debe ser texto",
    "string_too_short": "es demasiado corto (mínimo {min_length})",
    "string_too_long": "es demasiado largo (máximo {max_length})",
    "string_pattern_mismatch": "no tiene el formato esperado ({pattern})",
    "int_type": "debe ser un número entero",
    "int_parsing": "debe ser un número entero",
    "float_parsing": "debe ser un número",
    "bool_parsing": "debe ser verdadero o falso",
    "date_type": "debe ser una fecha AAAA-MM-DD",
    "date_parsing": "debe ser una fecha AAAA-MM-DD",
    "date_from_datetime_parsing": "debe ser una fecha AAAA-MM-DD",
    "datetime_parsing": "debe ser una fecha y hora ISO 8601",
    "enum": "debe ser uno de: {expected}",
    "literal_error": "debe ser uno de: {expected}",
    "list_type": "debe ser una lista",
    "too_long": "tiene demasiados elementos (máximo {max_length})",
    "dict_type": "debe ser un objeto JSON",
    "model_type": "debe ser un objeto JSON",
    "model_attributes_type": "debe ser un objeto JSON",
    "json_invalid": "JSON inválido: {error}",
    "json_type": "debe ser JSON",
    "greater_than_equal": "debe ser mayor o igual que {ge}",
    "less_than_equal": "debe ser menor o igual que {le}",
    "greater_than": "debe ser mayor que {gt}",
    "less_than": "debe ser menor que {lt}",
}


def located(
    loc: tuple[str | int, ...] | list[str | int],
    message: str,
    kind: str | None = None,
    ctx: dict[str, object] | None = None,
) -> FieldProblem:
    """A validation error as field + reason. Cross-field checks name their field in the
    message ("birth_date: …"); that name is joined to the location of the object checked."""
    path = [str(p) for p in loc]
    reason = message.removeprefix("Value error, ")
    template = _SPANISH.get(kind or "")
    if template is not None:
        values = dict(ctx or {})
        if isinstance(values.get("expected"), str):  # pydantic's "'a', 'b' or 'c'"
            values["expected"] = str(values["expected"]).replace("' or '", "' o '")
        try:
            reason = template.format(**values)
        except (KeyError, IndexError):
            reason = template.split(" {")[0].split(" (")[0]
    match = _FIELD_PREFIX.match(reason)
    if match:
        path.append(match.group(1))
        reason = match.group(2)
    return FieldProblem(".".join(path) or "body", reason)
