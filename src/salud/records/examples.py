"""The official FHIR R4 examples (hl7.fhir.r4.examples 4.0.1, in the shared data folder's
`fhir-r4-examples/`) loaded into the store: `salud records load-examples DIR`.

Every file that is not a Bundle goes through the bulk import (records/bulk.py) as one chunk,
so that the examples may point at each other in any order, and leniently: about a hundred
of them point at resources the set does not include (Patient/1 … Patient/255 of a List,
Organization/1, …); each such reference is reported, none is invented (no placeholder
resources: a placeholder would be read back as if it were data). The transaction Bundles are
then posted as transactions (all or nothing; also lenient about references to nothing, which
each entry's `response.outcome` names) and the batch Bundles as batches.

The examples' Patients (ids `example`, `f001`, `pat1`…) are not CURPs: they are kept as
Patients outside the registry, each its own record's partition (docs/fhir.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.context import Caller
from salud.errors import DomainError
from salud.kit import exactjson
from salud.records import bulk, bundles
from salud.records.outcome import FhirError
from salud.storage.fastread import FastReader


@dataclass
class BundleResult:
    name: str
    kind: str  # transaction | batch | …
    loaded: bool
    reason: str | None = None
    response: dict[str, Any] | None = None  # the transaction-response or batch-response


@dataclass
class ExamplesReport:
    files: list[str]  # the files imported one by one, in line order (line n = files[n - 1])
    imported: bulk.ImportReport
    bundles: list[BundleResult] = field(default_factory=list)

    def refused(self) -> dict[str, str]:
        """File name -> the reason it was not stored."""
        return {self.files[r.line - 1]: r.reason for r in self.imported.rejects}

    def dangling(self) -> dict[str, list[str]]:
        """File name -> the references to resources that are not in the set."""
        out: dict[str, list[str]] = {}
        for d in self.imported.danglings:
            out.setdefault(self.files[d.line - 1], []).append(d.target)
        return out


@dataclass(frozen=True, slots=True)
class Examples:
    """A directory's examples, read: each resource as one NDJSON line, and the Bundles."""

    source: str
    names: list[str]
    lines: list[tuple[int, bytes]]  # (n, JSON on one line): line n is names[n - 1]
    bundles: list[tuple[str, dict[str, Any]]]


def read(directory: Path) -> Examples:
    names: list[str] = []
    lines: list[tuple[int, bytes]] = []
    packs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.json")):
        doc = exactjson.loads(path.read_bytes())
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            packs.append((path.name, doc))
        else:
            names.append(path.name)
            lines.append((len(names), exactjson.dumps(doc)))
    return Examples(directory.name, names, lines, packs)


async def load(
    sessions: async_sessionmaker[AsyncSession],
    reader: FastReader,
    caller: Caller,
    examples: Examples,
    base: str,
) -> ExamplesReport:
    """Load the examples; what loaded, what was refused and why."""
    imported = await bulk.import_lines(
        sessions, caller, examples.lines, source=examples.source, lenient=True,
        chunk_size=max(len(examples.lines), 1),
    )  # fmt: skip
    report = ExamplesReport(examples.names, imported)
    for name, doc in examples.bundles:
        kind = str(doc.get("type"))
        try:
            if kind == "transaction":
                async with sessions() as session, session.begin():
                    result = await bundles.transaction(
                        session, reader, caller, base, doc, lenient=True
                    )
            elif kind == "batch":
                result = await bundles.batch(sessions, reader, caller, base, doc)
            else:
                report.bundles.append(
                    BundleResult(name, kind, False, "solo Bundles transaction o batch")
                )
                continue
        except (FhirError, DomainError) as exc:
            await caller.record(  # as the API records a failed transaction
                "records:Bundle:transaction", "Bundle", outcome="denied",
                detail={"entries": len(doc.get("entry") or []), "problem": str(exc)[:300]},
            )  # fmt: skip
            reason = bulk.reason_of(exc) if isinstance(exc, FhirError) else str(exc)
            report.bundles.append(BundleResult(name, kind, False, reason))
            continue
        report.bundles.append(BundleResult(name, kind, True, None, result))
    return report
