"""The search side of the mirrored types (records/mirror.py), pure: their search
parameters (FHIR R4 names), the parsing of a query (an unknown parameter, modifier or
_include is refused by name), the matching of built resources, the searchset Bundle with its
paging links, and their CapabilityStatement entries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from salud.kit.text import search_key
from salud.records.mirror import CLUES_SYSTEM, KINDS, READ_ONLY
from salud.records.outcome import FhirError, bounded_int

# Search parameters (FHIR R4 names) -> type; `string` ones take :contains and :exact.
PARAMS: dict[str, dict[str, str]] = {
    "Organization": {"identifier": "token", "name": "string", "type": "token", "active": "token"},
    "Location": {
        "identifier": "token", "name": "string", "address-state": "string",
        "organization": "reference", "status": "token",
    },
    "Coverage": {
        "identifier": "token", "patient": "reference", "beneficiary": "reference",
        "status": "token", "payor": "reference",
    },
    "RelatedPerson": {
        "identifier": "token", "patient": "reference", "relationship": "token", "active": "token",
    },
}  # fmt: skip
INCLUDES: dict[str, tuple[str, ...]] = {
    "Organization": (),
    "Location": ("Location:organization",),
    "Coverage": ("Coverage:beneficiary", "Coverage:patient", "Coverage:payor"),
    "RelatedPerson": ("RelatedPerson:patient",),
}
_CONTROL = frozenset({"_id", "_count", "_offset", "_format", "_include"})
_MODIFIERS = frozenset({"contains", "exact"})  # of the string parameters
MAX_COUNT, DEFAULT_COUNT = 200, 50
# The deepest page a search may reach by _offset; past it, narrow the search. No next link
# points beyond it (it would be a 400).
MAX_OFFSET = 10_000
FM_STATUS = "http://hl7.org/fhir/fm-status"
LOCATION_STATUS = "http://hl7.org/fhir/location-status"

_T = TypeVar("_T")


@dataclass(slots=True)
class Query:
    kind: str
    count: int = DEFAULT_COUNT
    offset: int = 0
    includes: tuple[str, ...] = ()
    # (parameter, modifier, comma-separated alternatives), one per occurrence: all must hold
    terms: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


def parse_query(kind: str, query: list[tuple[str, str]]) -> Query:
    """The query, every unknown parameter, modifier or _include refused by name."""
    known = PARAMS[kind]
    unknown = sorted({n for n, _ in query if n not in _CONTROL and not _known(known, n)})
    if unknown:
        raise FhirError.one(
            400, "not-supported",
            f"parámetros de búsqueda no admitidos para {kind}: {', '.join(unknown)} "
            f"(admitidos: {', '.join(sorted(set(known) | _CONTROL))}; :contains y :exact en los "
            "de texto)",
        )  # fmt: skip
    q = Query(kind)
    terms: list[tuple[str, str, tuple[str, ...]]] = []
    for name, raw in query:
        if name == "_count":
            q.count = bounded_int(raw, name, 1, MAX_COUNT)
        elif name == "_offset":
            q.offset = bounded_int(raw, name, 0, MAX_OFFSET)
        elif name == "_include":
            if raw.removesuffix(":iterate") not in INCLUDES[kind]:
                allowed = ", ".join(INCLUDES[kind]) or "ninguno"
                raise FhirError.one(
                    400, "not-supported", f"_include={raw}: no admitido (admitidos: {allowed})"
                )
            q.includes += (raw.removesuffix(":iterate"),)
        elif name != "_format":
            param, _, modifier = name.partition(":")
            values = tuple(raw.split(","))
            _check_values(kind, param, values)
            terms.append((param, modifier, values))
    q.terms = tuple(terms)
    return q


# The values a token parameter can take (anything else would silently match nothing).
_CLOSED = {
    ("Organization", "active"): frozenset({"true", "false"}),
    ("RelatedPerson", "active"): frozenset({"true", "false"}),
    ("Coverage", "status"): frozenset({"active", "cancelled", "draft", "entered-in-error"}),
    ("Location", "status"): frozenset({"active", "suspended", "inactive"}),
}


def _check_values(kind: str, param: str, values: tuple[str, ...]) -> None:
    """Refuse an empty value, and a value a closed token parameter cannot take."""
    if any(not v.strip() for v in values):
        raise FhirError.one(400, "invalid", f"{param}: falta el valor", param)
    allowed = _CLOSED.get((kind, param))
    bad = [v for v in values if allowed is not None and v.rsplit("|", 1)[-1] not in allowed]
    if bad:
        raise FhirError.one(
            400, "invalid",
            f"{param}: «{', '.join(bad)}» no es un valor de {kind}.{param} "
            f"({', '.join(sorted(allowed or ()))})",
            param,
        )  # fmt: skip


def _known(known: dict[str, str], name: str) -> bool:
    param, _, modifier = name.partition(":")
    kind = known.get(param)
    return kind is not None and (not modifier or (kind == "string" and modifier in _MODIFIERS))


def reference_target(raw: str, kind: str) -> str:
    """ "Type/id" of a reference search value: `id`, `Type/id` or an absolute URL."""
    parts = raw.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else f"{kind}/{raw}"


def _pairs(items: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(i.get("system"), i["value"]) for i in items if "value" in i]


def _codes(concepts: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(c.get("system"), c["code"]) for cc in concepts for c in cc.get("coding", [])]


def _holds(doc: dict[str, Any], param: str, modifier: str, raw: str) -> bool:
    """Whether an Organization, a Coverage or a RelatedPerson meets one search value."""
    if param == "_id":
        return bool(doc["id"] == raw)
    if param == "identifier":
        return token_match(_pairs(doc.get("identifier", [])), raw)
    if param == "name":
        return string_match([doc["name"], *doc.get("alias", [])], raw, modifier)
    if param == "type":
        return token_match(_codes(doc.get("type", [])), raw)
    if param == "relationship":
        return token_match(_codes(doc.get("relationship", [])), raw)
    if param == "active":
        return raw == str(doc["active"]).lower()
    if param == "status":
        return token_match([(FM_STATUS, doc["status"])], raw)
    if param in ("patient", "beneficiary"):
        whose = doc["patient" if doc["resourceType"] == "RelatedPerson" else "beneficiary"]
        return bool(reference_target(raw, "Patient") == whose["reference"])
    # payor
    return any(reference_target(raw, "Organization") == p.get("reference") for p in doc["payor"])


def matching(docs: list[dict[str, Any]], q: Query) -> list[dict[str, Any]]:
    return [
        doc
        for doc in docs
        if all(any(_holds(doc, p, m, v) for v in values) for p, m, values in q.terms)
    ]


def identifier_keys(values: tuple[str, ...]) -> set[str] | None:
    """The CLUES keys an identifier search names; None when it names every unit."""
    keys: set[str] = set()
    for value in values:
        system, bar, code = value.rpartition("|")
        if bar and system != CLUES_SYSTEM:  # another system, or none (`|code`)
            continue
        if not code:  # `system|`
            return None
        keys.add(code)
    return keys


def narrow(current: set[_T] | None, values: set[_T]) -> set[_T]:
    return values if current is None else current & values


def paging_links(
    base: str, kind: str, query: list[tuple[str, str]], offset: int, count: int, total: int
) -> list[dict[str, str]]:
    """A searchset's self, next and previous links (every search of this server pages by
    `_offset`); no next link points past the deepest page `_offset` may reach."""
    kept = [(n, v) for n, v in query if n != "_offset"]

    def url(at: int) -> str:
        params = kept + ([("_offset", str(at))] if at else [])
        return f"{base}/{kind}" + (f"?{urlencode(params)}" if params else "")

    links = [{"relation": "self", "url": url(offset)}]
    if offset + count < total and offset + count <= MAX_OFFSET:
        links.append({"relation": "next", "url": url(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": url(max(0, offset - count))})
    return links


def searchset(
    base: str, kind: str, query: list[tuple[str, str]], q: Query, total: int,
    page: list[dict[str, Any]], included: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    links = paging_links(base, kind, query, q.offset, q.count, total)
    entries = [
        {"fullUrl": f"{base}/{doc['resourceType']}/{doc['id']}", "resource": doc,
         "search": {"mode": mode}}
        for docs, mode in ((page, "match"), (included, "include"))
        for doc in docs
    ]  # fmt: skip
    return {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links,
            "entry": entries}  # fmt: skip


# --- CapabilityStatement --------------------------------------------------------------------

_DOCUMENTATION = {
    "Organization": "Las instituciones, de solo lectura: una por clave del catálogo DGIS de "
    "afiliación (id inst-<clave>, p. ej. inst-2 = IMSS) y una por institución de la CLUES sin "
    "clave DGIS (inst-<letras>, p. ej. inst-SSA).",
    "Location": "Las unidades del catálogo CLUES (id = CLUES, identificador "
    "urn:oid:2.16.840.1.113883.4.631), de solo lectura; address-state acepta el nombre del "
    "estado o sus letras CLUES; near no se admite.",
    "Coverage": "Las afiliaciones (derechohabiencia) de la persona en el padrón (id "
    "<CURP>-<clave DGIS>[-<número de afiliación>]), de solo lectura; se busca por persona "
    "(patient) y con las mismas reglas de acceso y auditoría que la persona.",
    "RelatedPerson": "La madre, el padre o el tutor de un menor vinculado en el padrón al "
    "completar su registro (id <CURP del menor>-tutor-<número>, identificador: la CURP del "
    "adulto, relación v3-RoleCode MTH, FTH o GUARD), de solo lectura; activo hasta que se "
    "termina el vínculo o el menor cumple 18; se busca por persona (patient) con las reglas "
    "de acceso y auditoría de la persona.",
}
_KEPT = (
    " Otros ids de este tipo son recursos guardados por una carga en bloque (como los ejemplos "
    "oficiales): se leen por id y no aparecen en las búsquedas. Las escrituras responden 405."
)


_WRITTEN = (
    " Las instituciones también escriben RelatedPerson (un familiar, un contacto de "
    "emergencia): esos se guardan, se leen, se actualizan y tienen historia como cualquier "
    "recurso del expediente, y no aparecen en las búsquedas; escribir un id del padrón "
    "responde 405."
)


def capabilities() -> list[dict[str, Any]]:
    """The CapabilityStatement.rest.resource entries of the mirrored types (RelatedPerson's
    own ids are read-only; other RelatedPerson ids are kept resources, written as any)."""
    written = ["read", "vread", "update", "delete", "history-instance", "create", "search-type"]
    return [
        {
            "type": kind,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{kind}",
            "documentation": _DOCUMENTATION[kind] + (_KEPT if kind in READ_ONLY else _WRITTEN),
            "interaction": [
                {"code": c} for c in (["read", "search-type"] if kind in READ_ONLY else written)
            ],
            "versioning": "versioned" if kind in READ_ONLY else "versioned-update",
            "readHistory": kind not in READ_ONLY,
            "updateCreate": kind not in READ_ONLY,
            "conditionalCreate": False,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchInclude": list(INCLUDES[kind]),
            "searchParam": [{"name": n, "type": t} for n, t in sorted(PARAMS[kind].items())]
            + [{"name": "_id", "type": "token"}],
        }
        for kind in sorted(KINDS)
    ]


# --- search values --------------------------------------------------------------------------


def token_match(pairs: Iterable[tuple[str | None, str]], raw: str) -> bool:
    """FHIR token search (R4 §3.1.1.4.1): `code`, `system|code`, `|code`, `system|`."""
    if "|" not in raw:
        return any(code == raw for _, code in pairs)
    system, _, code = raw.partition("|")
    return any((s or "") == system and (not code or c == code) for s, c in pairs)


def string_match(texts: Iterable[str | None], raw: str, modifier: str) -> bool:
    """FHIR string search: the start of the text, ignoring case and accents; `:contains`
    anywhere; `:exact` the whole text as written."""
    if modifier == "exact":
        return any(t == raw for t in texts if t)
    key = search_key(raw)
    keys = [search_key(t) for t in texts if t]
    if modifier == "contains":
        return any(key in k for k in keys)
    return any(k.startswith(key) for k in keys)
