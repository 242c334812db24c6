"""FHIR search (R4 §3.1.1.5): a searchset Bundle with paging links, `_include` and
`_revinclude`, through the same access rules and audit as every read (records/service.py).
Unknown parameters are refused by name, never ignored."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import ColumnElement, or_
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.permissions import Permission, Role
from salud.access.scopes import allows
from salud.identity import repository as persons
from salud.records import mirror, mirrored, patient_search, repository
from salud.records.indexing import DEFAULT_SORT, PARAMS, PATIENT_PATH, interval, sort_keys
from salud.records.mirror_query import MAX_OFFSET, paging_links
from salud.records.models import FhirResource
from salud.records.outcome import FhirError, bounded_int
from salud.records.patient import to_patient
from salud.records.service import bundle_entry, may, person_scope, restriction_filters
from salud.records.types import R4_TYPES, STORED_TYPES
from salud.storage import locks
from salud.storage.fastread import FastReader

MAX_COUNT, DEFAULT_COUNT = 200, 50
_GLOBAL = frozenset(
    {"_id", "_lastUpdated", "_count", "_sort", "_offset", "_format", "_include", "_revinclude"}
)
_PREFIXES = ("eq", "ne", "ge", "gt", "le", "lt")
# How many values one search may name, all its parameters together (`code=a,b`, `_id=…`): each
# is a condition of the statement, and thousands of them overflow the database's limits.
MAX_VALUES = 100
# The reference parameters whose bare id (`encounter=123`) names one type (R4 §3.1.1.4.8);
# the others (`subject`) may name several, and take `Type/id`.
_ONE_TARGET = {"patient": "Patient", "beneficiary": "Patient", "encounter": "Encounter",
               "organization": "Organization", "practitioner": "Practitioner"}  # fmt: skip


def _token_value(raw: str, name: str) -> tuple[str | None, str]:
    if "|" in raw:
        system, _, code = raw.partition("|")
        if not system and not code:
            raise FhirError.one(400, "invalid", f"{name}: «|» sin sistema ni código", name)
        return system, code
    if not raw:
        raise FhirError.one(400, "invalid", f"{name}: falta el valor", name)
    return None, raw


def _reference_value(raw: str, name: str) -> str:
    """ "Type/id" of a reference search value: `Type/id`, `Type/id/_history/n`, or a bare id of
    a parameter with one target type; an absolute URL is kept (it names another server's)."""
    if "://" in raw:
        return raw
    parts = raw.split("/")
    if len(parts) == 4 and parts[2] == "_history":
        parts = parts[:2]
    if len(parts) == 1 and parts[0] and name in _ONE_TARGET:
        return f"{_ONE_TARGET[name]}/{parts[0]}"
    if len(parts) == 2 and all(parts):
        return "/".join(parts)
    if not raw:
        raise FhirError.one(400, "invalid", f"{name}: falta el valor", name)
    raise FhirError.one(
        400, "invalid", f"{name}: «{raw}» no es una referencia Tipo/id (o un id de {name})", name
    )


def _date_value(raw: str, name: str) -> tuple[str, datetime, datetime]:
    if raw[:2] in ("sa", "eb", "ap"):
        raise FhirError.one(
            400, "not-supported",
            f"{name}: el prefijo {raw[:2]} no se admite (eq, ne, gt, ge, lt, le)", name,
        )  # fmt: skip
    prefix = raw[:2] if raw[:2] in _PREFIXES else "eq"
    text = raw[2:] if raw[:2] in _PREFIXES else raw
    try:
        start, end = interval(text)
    except ValueError:
        raise FhirError.one(400, "invalid", f"{name}: «{raw}» no es una fecha FHIR") from None
    return prefix, start, end


_CONTROL = frozenset({"_offset", "_count", "_sort", "_include", "_revinclude", "_format"})


def condition_query(text: str, kind: str, where: str) -> list[tuple[str, str]]:
    """The search of a conditional create (`identifier=sys%7C123`, URL-encoded as a query
    string, with or without `Type?` before it): at least one parameter=value, or a 400 at
    `where` (the `If-None-Exist` header, or a Bundle entry's `request.ifNoneExist`)."""
    if not isinstance(text, str):
        raise FhirError.one(400, "invalid", "debe ser texto", where)
    target, mark, rest = text.partition("?")
    if mark and target.strip("/") not in ("", kind):
        raise FhirError.one(
            400, "invalid", f"la búsqueda es de {target.strip('/')}, el recurso es {kind}", where
        )
    try:
        query = parse_qsl(rest if mark else text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        query = []
    control = sorted({n for n, _ in query} & _CONTROL)
    if control:
        raise FhirError.one(
            400, "invalid", f"una creación condicional busca por valores: sin {', '.join(control)}",
            where,
        )  # fmt: skip
    if not query or any(not name or not value for name, value in query):
        raise FhirError.one(
            400, "invalid",
            "debe ser una búsqueda parámetro=valor (p. ej. identifier=sistema|valor)", where,
        )  # fmt: skip
    return query


def condition_key(doc: dict[str, Any], condition: str, where: str) -> str:
    """The canonical form of a conditional create's search (its type, its parameters sorted
    and decoded, and the person it is kept within), whatever the wording of the request."""
    kind = doc["resourceType"]
    query = condition_query(condition, kind, where) + person_scope(doc)
    return f"{kind}?{urlencode(sorted(query))}"


async def existing(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, doc: dict[str, Any],
    condition: str, where: str,
) -> dict[str, Any] | None:  # fmt: skip
    """Conditional create (R4 §3.1.0.8.1): the one resource the condition finds, within the
    new resource's person (a search of a clinical type needs its patient), or None when it
    finds none; several are a 412. Until this transaction ends, another create on the same
    condition waits for it, and then finds what it wrote (`repository.hold_conditions`)."""
    kind = doc["resourceType"]
    query = condition_query(condition, kind, where) + person_scope(doc)
    key = condition_key(doc, condition, where)
    if caller.within is not None or locks.apart(session):
        # PostgreSQL, or a transaction whose entries are written within it: lock, then
        # search (the search's entries go where the caller's always go).
        await repository.hold_conditions(session, [key])
        return await _the_one(session, reader, caller, base, kind, query, where)
    # SQLite: the lock is the database's only write lock, which the group-commit writer
    # needs too. So search first as any read is (a refusal is recorded at once, durably);
    # only if nothing was found, take the lock and search again, the entries of this second
    # search written in the transaction, with the create.
    found = await _the_one(session, reader, caller, base, kind, query, where)
    if found is not None:
        return found
    await repository.hold_conditions(session, [key])
    return await _the_one(session, reader, replace(caller, within=session), base, kind,
                          query, where)  # fmt: skip


async def _the_one(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, kind: str,
    query: list[tuple[str, str]], where: str,
) -> dict[str, Any] | None:  # fmt: skip
    found = await search(session, reader, caller, base, kind, query, parsed=True)
    if found["total"] > 1:
        raise FhirError.one(
            412, "multiple-matches", f"la condición encontró {found['total']} recursos", where
        )
    if found["total"] == 1:
        resource: dict[str, Any] = found["entry"][0]["resource"]
        return resource
    return None


async def search(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, kind: str,
    query: list[tuple[str, str]], *, parsed: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """A searchset Bundle with paging links. Unknown parameters are refused, by name. Its
    matches carry their stored text as it is (service.stored_json), or, `parsed`, as dicts
    (for a conditional create, which returns what it found)."""
    if kind in mirror.KINDS:
        return await mirrored.search(session, reader, caller, base, kind, query, may)
    if kind == "Patient":
        return await patient_search.search(session, reader, caller, base, query)
    if kind in STORED_TYPES and kind not in PARAMS:
        raise FhirError.one(
            400, "not-supported",
            f"{kind} se guarda y se lee por id, sin búsqueda (listaría los de todos); "
            f"el de una persona está en Patient/CURP/$everything",
        )  # fmt: skip
    if kind not in PARAMS:
        raise FhirError.one(404, "not-supported", f"tipo de recurso no admitido: {kind}")
    known = PARAMS[kind]
    modified = sorted({n for n, _ in query if ":" in n})
    if modified:  # :missing, :text, :not, :exact, Type-qualified references…
        raise FhirError.one(
            400, "not-supported",
            f"modificadores de búsqueda no admitidos: {', '.join(modified)} "
            "(busque por el valor del parámetro, sin modificador)",
        )  # fmt: skip
    unknown = sorted({n for n, _ in query if n not in known and n not in _GLOBAL})
    if unknown:
        raise FhirError.one(
            400, "not-supported",
            f"parámetros de búsqueda no admitidos para {kind}: {', '.join(unknown)} "
            f"(admitidos: {', '.join(sorted(set(known) | _GLOBAL))})",
        )  # fmt: skip
    values = sum(raw.count(",") + 1 for name, raw in query if name not in _CONTROL)
    if values > MAX_VALUES:
        raise FhirError.one(
            400, "too-costly",
            f"la búsqueda tiene {values} valores; se admiten hasta {MAX_VALUES}: divídala",
        )  # fmt: skip
    if sum(name == "_sort" for name, _ in query) > 1:
        raise FhirError.one(
            400, "invalid", "_sort va una sola vez (varias claves, separadas por comas)", "_sort"
        )
    where: list[ColumnElement[bool]] = []
    count, offset, order, curp = DEFAULT_COUNT, 0, DEFAULT_SORT, None
    for name, raw in query:
        if name == "_count":
            count = bounded_int(raw, name, 1, MAX_COUNT)
        elif name == "_offset":
            offset = bounded_int(raw, name, 0, MAX_OFFSET)
        elif name == "_sort":
            order = sort_keys(raw, known)
        elif name in ("_format", "_include", "_revinclude"):
            continue
        elif name == "_id":
            if not all(raw.split(",")):
                raise FhirError.one(400, "invalid", "_id: falta el valor", "_id")
            where.append(FhirResource.fhir_id.in_(raw.split(",")))
        elif name == "_lastUpdated":
            prefix, start, end = _date_value(raw, name)
            column = FhirResource.last_updated
            where.append(
                {
                    "eq": (column >= start) & (column <= end),
                    "ne": (column < start) | (column > end),
                    "ge": column >= start,
                    "gt": column > end,
                    "le": column <= end,
                    "lt": column < start,
                }[prefix]
            )
        else:
            param = known[name]
            alternatives: list[ColumnElement[bool]] = []
            for value in raw.split(","):
                if param.kind == "token":
                    system, code = _token_value(value, name)
                    alternatives.append(repository.token_match(name, system, code))
                elif param.kind == "reference":
                    target = _reference_value(value, name)
                    if name in ("patient", "subject", "beneficiary") and target.startswith(
                        "Patient/"
                    ):
                        if curp is not None and curp != target[8:]:
                            raise FhirError.one(
                                400, "not-supported", "busque de una persona a la vez"
                            )
                        curp = target[8:]
                    alternatives.append(repository.reference_match(name, target))
                else:
                    alternatives.append(repository.date_match(name, *_date_value(value, name)))
            where.append(or_(*alternatives))
    if kind in PATIENT_PATH and curp is None:
        raise FhirError.one(
            400, "required",
            f"indique la persona: {kind}?patient=CURP (el expediente se consulta por persona)",
        )  # fmt: skip
    action = f"records:{kind}:search"
    who = await may(reader, caller, Permission.RECORD_READ, action, kind, curp, None)
    if curp is not None:
        where.append(FhirResource.person_curp == curp)
        where.extend(await restriction_filters(reader, who, curp))
    includes = _include_specs(kind, query)
    if includes and curp is None:  # they stay within one person's record
        raise FhirError.one(
            400, "not-supported",
            "_include y _revinclude se admiten en las búsquedas de una persona (patient=CURP)",
        )  # fmt: skip
    total, rows = await repository.search(session, kind, where, order, count, offset)
    extra = await _included(session, reader, who, base, curp, kind, [i for i, _ in rows], includes)
    await who.record(action, kind, person_curp=curp, detail={"total": total})
    links = paging_links(base, kind, query, offset, count, total)
    return {
        "resourceType": "Bundle", "type": "searchset", "total": total, "link": links,
        "entry": [
            {**bundle_entry(base, kind, i, c, parsed=parsed), "search": {"mode": "match"}}
            for i, c in rows
        ]
        + extra,
    }  # fmt: skip


def _include_specs(
    kind: str, query: list[tuple[str, str]]
) -> list[tuple[str, str, str, str | None]]:
    """("include" | "revinclude", source type, reference parameter, target type or None) of
    _include and _revinclude (FHIR R4 §3.1.1.5.3: `Type:param[:TargetType]`); anything else
    is refused by name, never partly read."""
    specs = []
    for name, raw in query:
        if name not in ("_include", "_revinclude"):
            continue
        parts = raw.split(":")
        source, param = parts[0], parts[1] if len(parts) > 1 else ""
        spec = PARAMS.get(source, {}).get(param)
        if spec is None or spec.kind != "reference" or len(parts) > 3:
            raise FhirError.one(
                400, "not-supported", f"{name}={raw}: no es Tipo:parámetro[:TipoDestino]"
            )
        target = parts[2] if len(parts) == 3 else None
        if target is not None and target not in R4_TYPES:
            raise FhirError.one(400, "not-supported", f"{name}={raw}: {target} no es un tipo")
        if name == "_include" and source != kind:
            raise FhirError.one(400, "not-supported", f"_include={raw}: el tipo debe ser {kind}")
        if name == "_revinclude" and target not in (None, kind):
            raise FhirError.one(400, "not-supported", f"_revinclude={raw}: el destino es {kind}")
        specs.append((name[1:], source, param, target))
    return specs


async def _included(
    session: AsyncSession, reader: FastReader, caller: Caller, base: str, curp: str | None,
    kind: str, ids: list[str], specs: list[tuple[str, str, str, str | None]],
) -> list[dict[str, Any]]:  # fmt: skip
    """Entries brought in by _include / _revinclude, within the same person's record. Each is
    a read of its own type: a machine client gets only the types its scopes name (403 naming
    the type otherwise), and the person's Patient is a Patient read, permitted and audited as
    one."""
    if not specs or not ids or curp is None:
        return []
    for mode, source, _, _ in specs:
        if mode == "revinclude":
            await _covered(caller, source, curp)
    restricted = await restriction_filters(reader, caller, curp)
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for mode, source, param, wanted in specs:
        if mode == "include":
            targets = await repository.reference_targets(session, kind, ids, param)
            if wanted is not None:  # `Type:param:Target`: only the targets of that type
                targets = [t for t in targets if t.partition("/")[0] == wanted]
        else:
            targets = await repository.referring(
                session, source, param, [f"{kind}/{i}" for i in ids]
            )
        for target in targets:
            if target in seen:
                continue
            seen.add(target)
            t_kind, _, t_id = target.partition("/")
            if t_kind == "Patient":
                person = await persons.get_by_curp(session, t_id) if t_id == curp else None
                if person is not None:
                    read = "records:Patient:read"
                    who = await may(reader, caller, Permission.PERSON_READ, read, "Patient",
                                    curp, curp)  # fmt: skip
                    await who.record(read, "Patient", person_curp=curp, subject_id=target)
                    out.append({"fullUrl": f"{base}/{target}", "resource": to_patient(person),
                                "search": {"mode": "include"}})  # fmt: skip
                continue
            await _covered(caller, t_kind, curp)
            found = await repository.live_in_record(session, t_kind, t_id, curp, restricted)
            if found is not None:
                out.append({**bundle_entry(base, t_kind, t_id, found),
                            "search": {"mode": "include"}})  # fmt: skip
    return out


async def _covered(caller: Caller, kind: str, curp: str) -> None:
    """403 (recorded) unless the caller's scopes cover reading this type; staff roles read
    every clinical type with the permission the search already checked."""
    p = caller.principal
    if p.role is Role.CLIENT and not allows(p.scopes, kind, False):
        action = f"records:{kind}:read"
        await caller.record(action, kind, person_curp=curp, outcome="denied")
        raise FhirError.one(403, "forbidden", f"los scopes del cliente no cubren {kind}")
