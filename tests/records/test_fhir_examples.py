"""The official FHIR R4 examples (shared data `fhir-r4-examples/`, hl7.fhir.r4.examples
4.0.1): all of them go in, each stored one reads back equal to its file apart from `meta`,
and each one refused is refused for a reason this test works out on its own (no R4B model,
the R4B model refuses it, or it names no patient the record can belong to)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from typer.testing import CliRunner

from salud.access.context import Caller
from salud.access.permissions import Role
from salud.access.principal import Principal
from salud.access.tokens import TokenService
from salud.cli.main import app as cli
from salud.kit import exactjson
from salud.records import bulk, examples
from salud.records.codes import CIE10_SYSTEMS, cie10_known

pytestmark = pytest.mark.db
# Where a resource of each of these types names its patient, and must (the record belongs to
# a person): the types the FHIR API searches by `patient`.
PATIENT_ELEMENT = {
    "Encounter": "subject", "Condition": "subject", "AllergyIntolerance": "patient",
    "MedicationRequest": "subject", "MedicationStatement": "subject", "Observation": "subject",
    "DiagnosticReport": "subject", "Procedure": "subject", "Immunization": "patient",
    "DocumentReference": "subject", "Consent": "patient", "Coverage": "beneficiary",
}  # fmt: skip


def _references(node: Any) -> set[str]:
    """Every literal relative reference "Type/id" (a test-side walker, on purpose)."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and not ref.startswith(("#", "urn:")) and "://" not in ref:
            parts = ref.split("/")
            if len(parts) in (2, 4):
                found.add("/".join(parts[:2]))
        for value in node.values():
            found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def _r4b_problem(doc: dict[str, Any]) -> str | None:
    try:
        model = get_fhir_model_class(doc["resourceType"])
    except ValueError:
        return "R4B"
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"])
    return None


def _own_rule(doc: dict[str, Any]) -> str | None:
    """What our record's rules say about it: AuditEvent is the audit log's; a clinical entry
    names a patient."""
    if doc["resourceType"] == "AuditEvent":
        return "bitácora"  # /fhir/AuditEvent is the server's own audit log
    element = PATIENT_ELEMENT.get(doc["resourceType"])
    if element is not None:
        value = doc.get(element)
        refs = _references(value) if value is not None else set()
        if not any(r.startswith("Patient/") for r in refs):
            return "debe referir a su paciente"
    if any(not cie10_known(code) for code in _icd10_codes(doc)):
        return "catálogo de la DGIS"  # a CIE-10 code the DGIS catalog does not have
    return None


def _patients(doc: dict[str, Any]) -> set[str]:
    return {r for r in _references(doc) if r.startswith("Patient/")}


def _icd10_codes(node: Any) -> list[str]:
    """Every code of a coding in the CIE-10 system, anywhere in the resource."""
    if isinstance(node, list):
        return [c for v in node for c in _icd10_codes(v)]
    if not isinstance(node, dict):
        return []
    own = [str(node["code"])] if node.get("system") in CIE10_SYSTEMS and "code" in node else []
    return own + [c for v in node.values() for c in _icd10_codes(v)]


def _unsupported(entry: dict[str, Any]) -> bool:
    """An entry no transaction here can carry: a URL not relative to the base, a conditional
    update or delete, a conditional read, or a Patient written (the registry's, read-only)."""
    request, resource = entry["request"], entry.get("resource") or {}
    path, conditional = request["url"].split("?")[0], "?" in request["url"]
    return (
        "://" in path
        or (request["method"] in ("PUT", "DELETE") and conditional)
        or bool({"ifNoneMatch", "ifModifiedSince"} & set(request))
        or (request["method"] in ("POST", "PUT") and resource.get("resourceType") == "Patient")
    )


def _without_meta(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "meta"}


def _has_trailing_zero(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_has_trailing_zero(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_trailing_zero(v) for v in node)
    return isinstance(node, exactjson.Written) and "." in node.text and node.text.endswith("0")


def _as_written(doc: dict[str, Any]) -> bytes:
    """The resource without meta, keys sorted, each number as its text (1.50 is not 1.5)."""
    return exactjson.dumps(_without_meta(doc), sort_keys=True)


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite(v, ids) for k, v in node.items()}
        if out.get("reference") in ids:
            out["reference"] = ids[out["reference"]]
        return out
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


def loader(app: Any) -> Caller:
    principal = Principal(
        "cli:ejemplos", "importacion:ejemplos", Role.CLIENT,
        scopes=frozenset({"system/*.read", "system/*.write"}),
    )  # fmt: skip
    return Caller(principal, app.state.audit, purpose="importacion")


def machine(app: Any) -> dict[str, str]:
    tokens: TokenService = app.state.tokens
    principal = Principal(
        "client:lector", "lector.sistema", Role.CLIENT, scopes=frozenset({"system/*.read"})
    )
    return {"Authorization": f"Bearer {tokens.issue(principal)}"}


async def test_the_official_examples_load_and_read_back(
    client: httpx.AsyncClient, shared_data: Path
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    found = examples.read(shared_data / "fhir-r4-examples")
    docs = {
        name: exactjson.loads(raw) for name, (_, raw) in zip(found.names, found.lines, strict=True)
    }
    assert len(docs) + len(found.bundles) == 681  # SOURCES.md: 681 files
    report = await examples.load(
        app.state.sessions, app.state.reader, loader(app), found, "http://test/fhir"
    )
    refused = report.refused()
    # Each refusal has a reason this test finds on its own, and the reason says it.
    for name, doc in docs.items():
        problem = _r4b_problem(doc) or _own_rule(doc)
        if problem is None:
            assert name not in refused, (name, refused.get(name))
        else:
            assert name in refused, name
            assert problem in refused[name], (name, refused[name])
    assert "linkId" in refused["Questionnaire-qs1.json"]  # deliberately broken
    # Patient ids longer than a CURP are partitions of their own (the key is 64 wide).
    long_ids = [n for n, d in docs.items() if any(len(r) > 26 for r in _patients(d))]
    assert len(long_ids) >= 3, long_ids
    assert not set(long_ids) & set(refused), long_ids
    no_model = {n for n, d in docs.items() if _r4b_problem(d) == "R4B"}
    assert len(no_model) == 13  # the R4 types R4B replaced, one example each
    assert all("R4B eliminó o reemplazó" in refused[n] for n in no_model)

    # Everything stored reads back equal to its file, apart from meta, each number as written
    # (35 files have decimals with trailing zeros, such as 1.50).
    assert sum(_has_trailing_zero(d) for d in docs.values()) >= 30
    headers = machine(app)
    loaded = [name for name in docs if name not in refused]
    assert report.imported.created == len(loaded)
    for name in loaded:
        doc = docs[name]
        answer = await client.get(f"/fhir/{doc['resourceType']}/{doc['id']}", headers=headers)
        assert answer.status_code == 200, (name, answer.text)
        assert _as_written(exactjson.loads(answer.content)) == _as_written(doc), name

    # References to what is not stored (not in the set, or refused) are reported, each one,
    # and only those.
    in_set = {f"{docs[n]['resourceType']}/{docs[n]['id']}" for n in loaded}
    expected = {
        name: sorted(_references(doc) - in_set) for name, doc in docs.items() if name in loaded
    }
    assert report.dangling() == {n: refs for n, refs in expected.items() if refs}
    assert 90 <= len(report.dangling()) <= 110  # "about 100 of them" (issue 5)

    # The transaction Bundles as transactions; the batches as batches.
    results = {b.name: b for b in report.bundles}
    for name, bundle in found.bundles:
        unsupported = any(_unsupported(e) for e in bundle["entry"])
        assert results[name].loaded is not unsupported, (name, results[name].reason)
        if unsupported:  # the reason names the entry
            assert re.search(r"entry\[\d+\]|entrada \d+", results[name].reason or ""), name
            continue
        response = results[name].response
        assert response is not None
        assert len(response["entry"]) == len(bundle["entry"])
        if bundle["type"] != "transaction":
            continue
        locations = [e["response"]["location"].split("/_history")[0] for e in response["entry"]]
        ids = {e["fullUrl"]: loc for e, loc in zip(bundle["entry"], locations, strict=True)}
        for entry, location in zip(bundle["entry"], locations, strict=True):
            answer = await client.get(f"/fhir/{location}", headers=headers)
            assert answer.status_code == 200, (location, answer.text)
            read = exactjson.loads(answer.content)
            assert read.pop("id") == location.split("/")[1]
            assert _as_written(read) == _as_written(_rewrite(entry["resource"], ids)), location
    summary = results["Bundle-bundle-request-simplesummary.json"].response
    assert summary is not None
    assert summary["entry"][0]["resource"]["id"] == "example"  # GET Patient/example

    # Loading them again changes nothing: same id and same content are left alone.
    again = await bulk.import_lines(
        app.state.sessions, loader(app), found.lines, source="otra vez", lenient=True,
        chunk_size=1000,
    )  # fmt: skip
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(loaded))
    # The interactive API refuses the broken Questionnaire too, naming the element.
    broken = docs["Questionnaire-qs1.json"]
    writer = app.state.tokens.issue(
        Principal("client:w", "escritor", Role.CLIENT, scopes=frozenset({"system/*.write"}))
    )
    answer = await client.post(
        "/fhir/Questionnaire", json=broken, headers={"Authorization": f"Bearer {writer}"}
    )
    assert answer.status_code == 400
    assert "linkId" in answer.json()["issue"][0]["expression"][0]


def test_load_examples_command(cli_env: CliRunner, shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "fhir-r4-examples"
    folder = tmp_path / "ejemplos"
    folder.mkdir()
    for name in ("Patient-example.json", "Observation-example.json", "Questionnaire-qs1.json",
                 "Bundle-hla-1.json", "Bundle-xds.json"):  # fmt: skip
        (folder / name).write_bytes((source / name).read_bytes())
    report = tmp_path / "informe.json"
    result = cli_env.invoke(cli, ["records", "load-examples", str(folder), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "Questionnaire-qs1.json" in result.output
    written = orjson.loads(report.read_bytes())
    assert written["cargados"] == 2
    assert list(written["rechazados"]) == ["Questionnaire-qs1.json"]
    assert {b["archivo"]: b["cargado"] for b in written["bundles"]} == {
        "Bundle-hla-1.json": True, "Bundle-xds.json": False,
    }  # fmt: skip
