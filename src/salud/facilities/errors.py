"""Errors of the facilities domain."""

from __future__ import annotations

from salud.errors import FieldProblem, InvalidInput


class UnknownFileKind(InvalidInput):
    """A file whose header matches none of the CLUES layouts the importers know."""

    def __init__(self, path: str, expected: list[str]) -> None:
        reason = (
            "el encabezado no corresponde a ningún formato conocido del catálogo CLUES "
            f"({'; '.join(expected)})"
        )
        super().__init__(f"{path}: {reason}", [FieldProblem("path", reason)])
