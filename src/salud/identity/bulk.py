"""Bulk registration from CSV or NDJSON files.

Rows are validated by the same PersonCreate model as the API. Valid rows land in chunks,
each chunk one transaction; a CURP already in the registry is skipped, so re-running a file
(or finishing one whose import was killed midway) adds nothing twice and loses nothing.
Invalid rows go to a rejects file with their line number and the reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.errors import located
from salud.identity import repository
from salud.identity.schemas import PersonCreate
from salud.identity.service import affiliation_row, person_row
from salud.kit.clock import utcnow

CSV_COLUMNS = (
    "curp",
    "given_names",
    "first_surname",
    "second_surname",
    "birth_date",
    "birth_state",
    "sex",
    "nationality",
    "blood_type",
    "organ_donor",
    "organ_donor_date",
    "phone",
    "email",
    "address_state",
    "address_municipality",
    "address_locality",
    "postal_code",
    "street",
    "assigned_clues",
    "affiliations",
)
# CSV affiliations: "code|member|regime|valid_from|valid_to|status", several joined by ";".
_AFFILIATION_PARTS = (
    "institution_code",
    "member_number",
    "regime",
    "valid_from",
    "valid_to",
    "status",
)


@dataclass
class Rejected:
    line: int
    curp: str
    reason: str


@dataclass
class ImportReport:
    read: int = 0
    inserted: int = 0
    already_present: int = 0
    rejected: int = 0
    rejects: list[Rejected] = field(default_factory=list)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def csv_row_to_document(row: dict[str, str | None]) -> dict[str, Any]:
    unknown = set(row) - set(CSV_COLUMNS)
    if unknown:
        raise ValueError(f"columnas desconocidas: {', '.join(sorted(str(u) for u in unknown))}")
    doc: dict[str, Any] = {
        k: _blank_to_none(row.get(k))
        for k in CSV_COLUMNS
        if not k.startswith("address_") and k not in {"postal_code", "street", "affiliations"}
    }
    doc = {k: v for k, v in doc.items() if v is not None}
    state = _blank_to_none(row.get("address_state"))
    if state is not None:
        doc["address"] = {
            "state": state,
            "municipality": _blank_to_none(row.get("address_municipality")),
            "locality": _blank_to_none(row.get("address_locality")),
            "postal_code": _blank_to_none(row.get("postal_code")),
            "street": _blank_to_none(row.get("street")),
        }
    elif any(_blank_to_none(row.get(k)) for k in ("address_municipality", "address_locality")):
        raise ValueError("address_state: obligatoria si hay municipio o localidad")
    raw_aff = _blank_to_none(row.get("affiliations"))
    if raw_aff:
        affs = []
        for chunk in raw_aff.split(";"):
            parts = chunk.split("|")
            if len(parts) != len(_AFFILIATION_PARTS):
                raise ValueError(
                    "affiliations: use código|número|régimen|desde|hasta|estado separados por ;"
                )
            affs.append(
                {
                    k: v
                    for k, v in zip(_AFFILIATION_PARTS, (p.strip() for p in parts), strict=True)
                    if v
                }
            )
        doc["affiliations"] = affs
    return doc


def iter_documents(
    path: Path, fmt: str | None = None
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, document) for each row, or (line number, reason) when it cannot be read."""
    kind = fmt or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
    if kind == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"curp", "given_names", "first_surname"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"al CSV le faltan columnas: {', '.join(sorted(missing))}")
            for row in reader:
                line = reader.line_num
                try:
                    yield line, csv_row_to_document(row)
                except ValueError as exc:
                    yield line, str(exc)
        return
    if kind != "ndjson":
        raise ValueError(f"formato desconocido {kind!r}: use csv o ndjson")
    with path.open("rb") as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield line, f"JSON inválido: {exc}"
                continue
            if not isinstance(doc, dict):
                yield line, "cada línea debe ser un objeto JSON"
                continue
            yield line, doc


def _reason(exc: ValidationError) -> str:
    found = [located(list(err["loc"]), str(err["msg"])) for err in exc.errors()]
    return "; ".join(f"{p.field}: {p.reason}" for p in found)


async def import_file(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    actor: str,
    fmt: str | None = None,
    chunk_size: int = 5000,
    rejects_out: BinaryIO | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    report = ImportReport()
    seen: dict[str, int] = {}
    persons: list[tuple[Any, ...]] = []
    affiliations: dict[str, list[tuple[Any, ...]]] = {}
    writer = None
    text: io.TextIOWrapper | None = None
    if rejects_out is not None:
        text = io.TextIOWrapper(rejects_out, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text)
        writer.writerow(["linea", "curp", "motivo"])

    def reject(line: int, curp: str, reason: str) -> None:
        report.rejected += 1
        if len(report.rejects) < 1000:
            report.rejects.append(Rejected(line, curp, reason))
        if writer:
            writer.writerow([line, curp, reason])

    async def flush() -> None:
        if not persons:
            return
        async with sessions() as session, session.begin():
            inserted = await repository.bulk_insert(session, persons, affiliations)
        report.inserted += inserted
        report.already_present += len(persons) - inserted
        persons.clear()
        affiliations.clear()

    now = utcnow()
    for line, doc in iter_documents(path, fmt):
        report.read += 1
        if isinstance(doc, str):
            reject(line, "", doc)
            continue
        curp = str(doc.get("curp", ""))
        try:
            data = PersonCreate.model_validate(doc)
        except ValidationError as exc:
            reject(line, curp, _reason(exc))
            continue
        first = seen.get(data.curp)
        if first is not None:
            reject(line, curp, f"curp: repetida en la línea {first} de este archivo")
            continue
        seen[data.curp] = line
        row = person_row(data, actor, now)
        persons.append(tuple(row[c] for c in repository.PERSON_COLUMNS))
        if data.affiliations:
            affiliations[data.curp] = [
                tuple(affiliation_row(a)[c] for c in repository.AFFILIATION_COLUMNS[1:])
                for a in data.affiliations
            ]
        if len(persons) >= chunk_size:
            await flush()
        if progress and report.read % chunk_size == 0:
            progress(report.read)
    await flush()
    if progress:
        progress(report.read)
    if text is not None:
        text.flush()
        text.detach()  # leave the caller's stream open
    return report
