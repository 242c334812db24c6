"""transaction and batch Bundles (FHIR R4 §3.1.0.11).

A transaction is all or nothing: every entry is processed in the request's one database
transaction (audit entries included); the first failure rolls everything back and is
reported with the entry's index. Entries are processed in FHIR's order (DELETE, POST, PUT,
GET); a conditional create (`request.ifNoneExist`) that finds its resource stands for it
(200, nothing written) and its fullUrl names what it found; every other POST gets its id
before anything is written, so references between entries (`urn:uuid:…` full URLs) are
rewritten to `Type/id` first, forward references included, and the references of every
written resource are checked once all are written.

A batch processes each entry on its own (a transaction each): a failure is that entry's
response, the others stand."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from salud.access.audit import AuditEntry
from salud.access.audit_tx import record_in_transaction
from salud.access.context import Caller
from salud.errors import DomainError
from salud.kit import exactjson
from salud.records import repository, searching, service
from salud.records.indexing import fhir_instant, local_references, unresolved_references
from salud.records.outcome import FhirError, Issue, operation_outcome
from salud.records.validation import parse
from salud.storage.engine import DATA_ERRORS, refusal
from salud.storage.fastread import FastReader

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
_NOT_DONE = frozenset({"PATCH", "HEAD"})  # R4 HTTPVerb values this server does not serve
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    """The entries' full URLs replaced by the ids the server gives them, wherever a link to
    them stands (R4 §3.1.0.11.2: "resource references, url elements, or <a href> & <img src>
    in the narrative"); anything else is left as it is (an identifier's value stays)."""
    if isinstance(node, dict):
        out = {k: _rewrite(v, ids) for k, v in node.items()}
        for key in ("reference", "url"):
            value = out.get(key)
            if isinstance(value, str) and value in ids:
                out[key] = ids[value]
        div = out.get("div")
        if isinstance(div, str) and "urn:" in div:
            out["div"] = _LINK.sub(lambda m: f'{m[1]}="{ids.get(m[2], m[2])}"', div)
        return out
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


# A link in a narrative: href="…" or src="…" (XHTML, double quotes as FHIR's narratives use).
_LINK = re.compile(r'\b(href|src)="([^"]*)"')


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise FhirError.one(400, "structure", "Bundle.entry debe ser una lista de objetos")
    full_urls: set[str] = set()
    for i, entry in enumerate(entries):
        request = entry.get("request")
        full_url = entry.get("fullUrl")
        if full_url is not None:
            if not isinstance(full_url, str) or not full_url:
                raise FhirError.one(
                    400, "structure", "fullUrl debe ser un texto (uri)",
                    f"Bundle.entry[{i}].fullUrl",
                )  # fmt: skip
            if full_url in full_urls:  # R4 bdl-7: unique fullUrls
                raise FhirError.one(
                    400, "invalid", f"fullUrl {full_url} repetido en el Bundle",
                    f"Bundle.entry[{i}].fullUrl",
                )  # fmt: skip
            full_urls.add(full_url)
        if isinstance(request, dict) and not isinstance(request.get("method"), str | None):
            raise FhirError.one(
                400, "structure", "request.method debe ser un texto (GET, POST, PUT, DELETE)",
                f"Bundle.entry[{i}].request.method",
            )  # fmt: skip
        if isinstance(request, dict) and request.get("method") in _NOT_DONE:
            raise FhirError.one(
                400, "not-supported", f"{request['method']} no admitido en un Bundle",
                f"Bundle.entry[{i}].request.method",
            )  # fmt: skip
        if not isinstance(request, dict) or request.get("method") not in _ORDER:
            raise FhirError.one(
                400, "required", "cada entrada necesita request.method (GET, POST, PUT, DELETE)",
                f"Bundle.entry[{i}].request",
            )  # fmt: skip
        if not isinstance(request.get("url"), str) or not request["url"]:
            raise FhirError.one(
                400, "required", "falta request.url", f"Bundle.entry[{i}].request.url"
            )
        if "://" in request["url"].split("?")[0]:  # R4 entry.request.url: relative to base
            raise FhirError.one(
                400, "not-supported", "request.url debe ser relativa a la base del servidor",
                f"Bundle.entry[{i}].request.url",
            )  # fmt: skip
        conditional = sorted({"ifNoneMatch", "ifModifiedSince"} & set(request))
        if "ifNoneExist" in request and request["method"] != "POST":
            conditional.append("ifNoneExist (solo en POST)")
        if conditional:  # not done, so not silently ignored either
            raise FhirError.one(
                400, "not-supported", f"{', '.join(conditional)} no admitido en un Bundle",
                f"Bundle.entry[{i}].request",
            )  # fmt: skip
    return entries


def _assign_ids(entries: list[dict[str, Any]]) -> dict[str, str]:
    """fullUrl -> "Type/id" for every POST (new id) and PUT (its own id)."""
    ids: dict[str, str] = {}
    for entry in entries:
        resource, full_url = entry.get("resource"), entry.get("fullUrl")
        method, url = entry["request"]["method"], entry["request"]["url"]
        if not isinstance(resource, dict) or not isinstance(full_url, str):
            continue
        kind = resource.get("resourceType")
        if method == "POST":
            ids[full_url] = f"{kind}/{uuid.uuid4()}"
        elif method == "PUT" and "/" in url:
            ids[full_url] = url.split("?")[0]
    return ids


def _resource(entry: dict[str, Any], kind: str, ids: dict[str, str]) -> dict[str, Any]:
    """The entry's resource, its references to other entries rewritten."""
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        raise FhirError.one(400, "required", f"{entry['request']['method']} necesita resource")
    return parse(exactjson.dumps(_rewrite(resource, ids)), kind)


def _post_resource(entry: dict[str, Any], kind: str, ids: dict[str, str]) -> dict[str, Any]:
    """A POST's resource with the id it gets: the one assigned to its fullUrl, or a new one
    (an id the client put in it is not the server's to keep, FHIR R4 §3.1.0.11.2)."""
    doc = _resource(entry, kind, ids)
    doc["id"] = ids.get(entry.get("fullUrl") or "", f"{kind}/{uuid.uuid4()}").split("/", 1)[1]
    return doc


def _target(entry: dict[str, Any]) -> tuple[list[str], str]:
    """The parts of the entry's request path ("Type", then "id"…) and its query."""
    path, _, query = entry["request"]["url"].lstrip("/").partition("?")
    return path.split("/"), query


async def _one(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str,
    entry: dict[str, Any], index: int, ids: dict[str, str], check_refs: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None]:  # fmt: skip
    """(response, written resource or None) of one entry (`index`: its place in the Bundle)."""
    request = entry["request"]
    method = request["method"]
    parts, query = _target(entry)
    kind = parts[0]
    if method == "GET":
        if len(parts) == 1:
            # Blank values kept, as in a search by URL: `code=` is refused, never dropped.
            asked = parse_qsl(query, keep_blank_values=True)
            found = await searching.search(session, reader, caller, base, kind, asked)
            return {"status": "200 OK"}, {"resource": found}
        if len(parts) != 2:  # _history, vread, $operations: only through their REST URLs
            raise FhirError.one(
                400, "not-supported",
                "en un Bundle, GET admite Tipo?búsqueda y Tipo/id (historia, versiones y "
                "operaciones, por su URL)",
                "Bundle.entry.request.url",
            )  # fmt: skip
        stored = await service.read(session, reader, caller, kind, parts[1])
        return _response(200, base, kind, stored), {"resource": exactjson.loads(stored.content)}
    if method == "DELETE":
        if len(parts) != 2:
            raise FhirError.one(400, "not-supported", "DELETE condicional no admitido")
        await service.remove(session, reader, caller, kind, parts[1])
        return {"status": "204 No Content"}, None
    if method == "POST":
        matched = await _matched(session, reader, caller, base, entry, index, kind, ids)
        if matched is not None:
            return matched
        doc = _post_resource(entry, kind, ids)
        stored = await service.create(
            session, reader, caller, doc, doc["id"], check_refs=check_refs
        )
        return _response(201, base, kind, stored), {"resource": doc}
    doc = _resource(entry, kind, ids)
    if len(parts) != 2:
        raise FhirError.one(400, "not-supported", "PUT condicional no admitido")
    if_match = request.get("ifMatch")
    version = service.etag_version(if_match, "Bundle.entry.request.ifMatch")
    stored, created = await service.update(
        session, reader, caller, kind, parts[1], doc, version, check_refs=check_refs
    )
    return _response(201 if created else 200, base, kind, stored), {"resource": doc}


async def _matched(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str,
    entry: dict[str, Any], index: int, kind: str, ids: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any]] | None:  # fmt: skip
    """A conditional create's match (`request.ifNoneExist`): (response, the resource found),
    and the entry's fullUrl now names it; None when the POST is to create (no condition, or
    nothing found). Several found is a 412. What a create would refuse (a read-only type,
    an invalid resource, no permission or basis) is refused before anything is searched."""
    condition = entry["request"].get("ifNoneExist")
    if condition is None:
        return None
    doc = _post_resource(entry, kind, ids)
    await service.prepare_create(reader, caller, doc, doc["id"])
    where = f"Bundle.entry[{index}].request.ifNoneExist"
    found = await searching.existing(session, reader, caller, base, doc, condition, where)
    if found is None:
        return None
    if isinstance(entry.get("fullUrl"), str):
        ids[entry["fullUrl"]] = f"{kind}/{found['id']}"
    meta = found.get("meta") or {}
    response = {
        "status": "200 OK",
        "location": f"{kind}/{found['id']}/_history/{meta.get('versionId')}",
        "etag": f'W/"{meta.get("versionId")}"',
        "lastModified": meta.get("lastUpdated"),
    }
    return response, {"resource": found}


def _conditions(entries: list[dict[str, Any]], ids: dict[str, str]) -> dict[int, str]:
    """The canonical condition of each conditional create, by entry (one that cannot be read
    is refused with its reason when its entry is processed)."""
    keys: dict[int, str] = {}
    for i, entry in enumerate(entries):
        condition = entry["request"].get("ifNoneExist")
        if entry["request"]["method"] != "POST" or condition is None:
            continue
        try:
            doc = _post_resource(entry, _target(entry)[0][0], ids)
            keys[i] = searching.condition_key(doc, condition, "ifNoneExist")
        except (FhirError, DomainError):
            continue
    return keys


async def _posts(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str,
    entries: list[dict[str, Any]], posts: list[int], ids: dict[str, str],
) -> list[tuple[dict[str, Any], dict[str, Any]]]:  # fmt: skip
    """The transaction's POST entries: each checked (a failure names its entry), then all
    inserted together; (response, written resource) of each, in `posts`' order."""
    prepared: list[service.NewResource] = []
    docs: list[dict[str, Any]] = []
    for i in posts:
        kind = _target(entries[i])[0][0]
        try:
            doc = _post_resource(entries[i], kind, ids)
            prepared.append(await service.prepare_create(reader, caller, doc, doc["id"]))
        except (FhirError, DomainError) as exc:
            raise _failure(exc, i) from None
        docs.append(doc)
    stored = await service.write_new(session, prepared)
    return [
        (_response(201, base, n.kind, s), doc)
        for n, s, doc in zip(prepared, stored, docs, strict=True)
    ]


def _response(status: int, base: str, kind: str, stored: service.Stored) -> dict[str, Any]:
    return {
        "status": _STATUS_TEXT[status],
        "location": f"{kind}/{stored.fhir_id}/_history/{stored.version_id}",
        "etag": f'W/"{stored.version_id}"',
        "lastModified": fhir_instant(stored.last_updated),
    }


def _failure(exc: Exception, index: int) -> FhirError:
    if isinstance(exc, FhirError):
        issues = [
            Issue(i.code, f"entrada {index}: {i.diagnostics}", i.expression) for i in exc.issues
        ]
        return FhirError(exc.status, issues)
    assert isinstance(exc, DomainError)
    return FhirError.one(exc.status, "processing", f"entrada {index}: {exc.detail}")


async def transaction(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, bundle: dict[str, Any],
    *, lenient: bool = False, pending: list[AuditEntry] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Process a transaction in `session` (the caller commits, or rolls back on error). Every
    audit entry goes into the same transaction: kept if it commits, gone with it if not (the
    adapter then records the failed attempt, and the refusals left in `pending`, which a
    rollback must not erase). `lenient` (bulk loads only, never the API): a reference to
    nothing is a warning in its entry's `response.outcome`, not a refusal."""
    pending = [] if pending is None else pending
    caller = replace(caller, within=session, pending=pending, bases={})
    entries = _entries(bundle)
    ids = _assign_ids(entries)
    methods = [str(e["request"]["method"]) for e in entries]
    order = sorted(range(len(entries)), key=lambda i: _ORDER[methods[i]])
    responses: dict[int, dict[str, Any]] = {}
    written: dict[int, dict[str, Any]] = {}  # entry -> the resource it wrote (POST, PUT)

    async def one(i: int) -> None:
        try:
            response, result = await _one(session, reader, caller, base, entries[i], i, ids, False)
        except (FhirError, DomainError) as exc:
            raise _failure(exc, i) from None
        responses[i] = {"response": response}
        if result and methods[i] == "PUT":
            written[i] = result["resource"]
        elif result:
            responses[i]["resource"] = result["resource"]

    # The conditional creates' locks first, all together and before any row is touched, so
    # that this transaction never holds a row while waiting for a condition (no deadlock).
    # So are the resources it updates or deletes: two transactions naming the same ones in
    # other orders would otherwise each hold one row while waiting for the other's.
    conditions = _conditions(entries, ids)
    # One resource, one change: R4 (§3.1.0.11.2) fails a transaction whose DELETE and PUT
    # entries name the same resource (it answered 200 and wrote both).
    seen: dict[str, int] = {}
    for i in order:
        if methods[i] in ("PUT", "DELETE"):
            target = "/".join(_target(entries[i])[0][:2])
            if target in seen:
                raise FhirError.one(
                    400, "business-rule",
                    f"{target} aparece en las entradas {seen[target]} y {i}: una transacción "
                    "cambia cada recurso una vez",
                    f"Bundle.entry[{i}].request.url",
                )  # fmt: skip
            seen[target] = i
    changed = set(seen)
    await repository.hold_conditions(session, conditions.values(), changed)
    for i in order:  # DELETEs first
        if methods[i] == "DELETE":
            await one(i)
    posts = [i for i in order if methods[i] == "POST"]
    to_create: dict[str, int] = {}  # a condition that found nothing -> its entry
    for i in posts:  # conditional creates first: a match stands for its entry from now on
        kind = _target(entries[i])[0][0]
        try:
            matched = await _matched(session, reader, caller, base, entries[i], i, kind, ids)
        except (FhirError, DomainError) as exc:
            raise _failure(exc, i) from None
        if matched is not None:
            responses[i] = {"response": matched[0]}
        elif i in conditions and conditions[i] in to_create:  # both would create
            raise FhirError.one(
                400, "business-rule",
                f"la misma condición que la entrada {to_create[conditions[i]]}, que no encontró "
                "nada: las dos crearían el recurso",
                f"Bundle.entry[{i}].request.ifNoneExist",
            )  # fmt: skip
        elif i in conditions:
            to_create[conditions[i]] = i
    # The unmatched ones are prepared again with the rest: a later match may have changed
    # where their references point.
    posts = [i for i in posts if i not in responses]
    if posts:  # then the POSTs: prepared one by one, written together
        made = await _posts(session, reader, caller, base, entries, posts, ids)
        for i, (response, doc) in zip(posts, made, strict=True):
            responses[i] = {"response": response}
            written[i] = doc
    for i in order:  # then PUTs and reads, which see everything written before them
        if methods[i] not in ("DELETE", "POST"):
            await one(i)
    # Every reference, now that the whole transaction is written (one query per type; what
    # this transaction wrote is live and not looked up).
    live = frozenset(f"{d['resourceType']}/{d['id']}" for d in written.values())
    if lenient:
        missing = set(await service.dangling_references(session, *written.values(), live=live))
        for i, doc in written.items():
            refs = sorted((set(local_references(doc)) | set(unresolved_references(doc))) & missing)
            if refs:
                text = "referencia a un recurso que no existe: " + ", ".join(refs)
                issue = Issue("not-found", text, None, "warning")
                responses[i]["response"]["outcome"] = operation_outcome([issue])
    else:
        await service.check_references(session, *written.values(), live=live)
    if pending:  # the transaction's audit entries, appended together
        await record_in_transaction(session, caller.audit.key, pending)
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [responses[i] for i in range(len(entries))],
    }


async def batch(
    sessions: async_sessionmaker[AsyncSession], reader: FastReader, caller: Caller, base: str,
    bundle: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Each entry in a transaction of its own: one failing leaves the others standing."""
    entries = _entries(bundle)
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        try:
            async with sessions() as session, session.begin():
                response, result = await _one(session, reader, caller, base, entry, i, {}, True)
            item: dict[str, Any] = {"response": response}
            if result and entry["request"]["method"] == "GET":
                item["resource"] = result["resource"]
        except (FhirError, DomainError) as exc:
            failure = _failure(exc, i)
            item = {"response": {"status": str(failure.status),
                                 "outcome": operation_outcome(failure.issues)}}  # fmt: skip
        except DATA_ERRORS as exc:  # that entry's race or bad text; the others stand
            known = refusal(exc)
            if known is None:
                raise
            status, code, text = known
            item = {"response": {"status": str(status), "outcome": operation_outcome(
                [Issue(code, f"entrada {i}: {text}", f"Bundle.entry[{i}]")])}}  # fmt: skip
        out.append(item)
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}
