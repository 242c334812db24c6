"""Use cases of the registry: register, read, change (versioned), search, history."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import care
from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.errors import (
    Conflict,
    FieldProblem,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
)
from salud.identity import curp as curp_rules
from salud.identity import repository
from salud.identity.catalogs import affiliation_catalog
from salud.identity.models import Affiliation, Person, PersonVersion
from salud.identity.schemas import (
    Address,
    AffiliationIn,
    AffiliationRead,
    AffiliationStatus,
    FieldChange,
    OrganDonor,
    PersonCreate,
    PersonPage,
    PersonRead,
    PersonSummary,
    PersonUpdate,
    PersonVersionRead,
    check_donor,
)
from salud.kit.clock import utcnow
from salud.kit.text import search_key
from salud.storage.fastread import FastReader

# Fields of the person that the history compares, in the order they are shown.
_TRACKED = (
    "given_names",
    "first_surname",
    "second_surname",
    "nationality",
    "blood_type",
    "organ_donor",
    "organ_donor_date",
    "phone",
    "email",
    "address",
    "photo_ref",
    "assigned_clues",
    "affiliations",
)
_READ_FIELDS = (
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
    "photo_ref",
    "assigned_clues",
    "version",
    "created_at",
    "updated_at",
)
_ADDRESS_COLUMNS = {
    "state": "address_state",
    "municipality": "address_municipality",
    "locality": "address_locality",
    "postal_code": "postal_code",
    "street": "street",
}


# Which CLUES keys name units of the catalog, and what each became: {key: the key of the unit
# that took it over, or None while it is current}; a key missing from the answer is not in the
# catalog. The catalog (facilities) sits beside the registry, so the adapter that may see both
# supplies it, as the consent check does (api/care.py). A module-level function: a bulk
# import's worker processes receive it by reference.
UnitLookup = Callable[[AsyncSession, Collection[str]], Awaitable[Mapping[str, str | None]]]
UNCHECKED_UNIT = "no se puede comprobar contra el catálogo CLUES por esta vía"


def unit_problems(keys: Collection[str], found: Mapping[str, str | None]) -> dict[str, str]:
    """The reason each key is not a current unit of the catalog (none for those that are)."""
    problems: dict[str, str] = {}
    for key in keys:
        if key not in found:
            problems[key] = f"{key} no está en el catálogo CLUES"
        elif (successor := found[key]) is not None:
            problems[key] = f"{key} es ahora la unidad {successor}: asigne la clave vigente"
    return problems


async def check_unit(
    session: AsyncSession, clues: str | None, units: UnitLookup | None,
    field: str = "assigned_clues",
) -> None:  # fmt: skip
    """A person's assigned unit must be a current unit of the catalog: it goes into the signed
    credential and FHIR's managingOrganization. Without a lookup it cannot be told: refused."""
    if clues is None:
        return
    if units is None:
        raise InvalidInput.on(field, UNCHECKED_UNIT)
    reason = unit_problems([clues], await units(session, [clues])).get(clues)
    if reason is not None:
        raise InvalidInput.on(field, reason)


def _address_of(row: dict[str, Any]) -> Address | None:
    if row["address_state"] is None:
        return None
    return Address.model_construct(**{key: row[column] for key, column in _ADDRESS_COLUMNS.items()})


def _address_columns(address: Address | None) -> dict[str, Any]:
    return {
        column: (getattr(address, key) if address else None)
        for key, column in _ADDRESS_COLUMNS.items()
    }


def _affiliation_read(a: dict[str, Any]) -> AffiliationRead:
    entry = affiliation_catalog().get(a["institution_code"])
    return AffiliationRead.model_construct(
        institution_code=a["institution_code"],
        institution=entry.short_name if entry else str(a["institution_code"]),
        member_number=a["member_number"],
        regime=a["regime"],
        valid_from=a["valid_from"],
        valid_to=a["valid_to"],
        status=AffiliationStatus(a["status"]),
    )


def _columns(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


def to_read_row(row: dict[str, Any], affiliations: list[dict[str, Any]]) -> PersonRead:
    """PersonRead from plain column values (the hot read path builds no ORM objects)."""
    return PersonRead.model_construct(
        **{f: row[f] for f in _READ_FIELDS},
        address=_address_of(row),
        affiliations=[_affiliation_read(a) for a in affiliations],
    )


def to_read(person: Person) -> PersonRead:
    return to_read_row(
        _columns(person, repository.PERSON_COLUMNS),
        [_columns(a, repository.AFFILIATION_COLUMNS) for a in person.affiliations],
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def snapshot(person: Person) -> dict[str, Any]:
    """The person as it stands, JSON-ready, for the history table."""
    address = _address_of(_columns(person, repository.PERSON_COLUMNS))
    return {
        "given_names": person.given_names,
        "first_surname": person.first_surname,
        "second_surname": person.second_surname,
        "nationality": person.nationality,
        "blood_type": person.blood_type,
        "organ_donor": person.organ_donor,
        "organ_donor_date": _jsonable(person.organ_donor_date),
        "phone": person.phone,
        "email": person.email,
        "address": address.model_dump(mode="json") if address else None,
        "photo_ref": person.photo_ref,
        "assigned_clues": person.assigned_clues,
        "affiliations": [
            AffiliationIn.model_construct(
                institution_code=a.institution_code,
                member_number=a.member_number,
                regime=a.regime,
                valid_from=a.valid_from,
                valid_to=a.valid_to,
                status=AffiliationStatus(a.status),
            ).model_dump(mode="json")
            for a in person.affiliations
        ],
        "_meta": {
            "version": person.version,
            "at": person.updated_at.isoformat(),
            "by": person.updated_by,
            "reason": person.change_reason,
        },
    }


def person_values(data: PersonCreate, actor: str, now: datetime) -> tuple[Any, ...]:
    """Column values of a new person in repository.PERSON_COLUMNS order (the bulk path
    builds millions of these, so a tuple, not a dict)."""
    assert data.birth_date is not None
    assert data.birth_state is not None
    assert data.sex is not None
    address = data.address
    return (
        data.curp,
        data.given_names,
        data.first_surname,
        data.second_surname,
        search_key(data.first_surname),
        search_key(data.given_names),
        data.birth_date,
        data.birth_state,
        data.sex.value,
        data.nationality,
        data.blood_type.value,
        data.organ_donor.value,
        data.organ_donor_date,
        data.phone,
        data.email,
        address.state if address else None,
        address.municipality if address else None,
        address.locality if address else None,
        address.postal_code if address else None,
        address.street if address else None,
        data.photo_ref,
        data.assigned_clues,
        1,
        now,
        actor,
        now,
        actor,
        "alta",
    )


def person_row(data: PersonCreate, actor: str, now: datetime) -> dict[str, Any]:
    """Column values of a new person by name."""
    return dict(zip(repository.PERSON_COLUMNS, person_values(data, actor, now), strict=True))


def affiliation_values(a: AffiliationIn) -> tuple[Any, ...]:
    """In repository.AFFILIATION_COLUMNS order, without person_id."""
    return (a.institution_code, a.member_number, a.regime, a.valid_from, a.valid_to, a.status.value)


def affiliation_row(a: AffiliationIn) -> dict[str, Any]:
    return {
        "institution_code": a.institution_code,
        "member_number": a.member_number,
        "regime": a.regime,
        "valid_from": a.valid_from,
        "valid_to": a.valid_to,
        "status": str(a.status),
    }


# A refused registration of a CURP already registered is recorded as a denial (the log's
# outcomes are success, denied, not_found and error): its answer tells that the person exists.
_ALREADY_REGISTERED = {"conflict": "curp already registered"}


def _already_registered() -> Conflict:
    return Conflict(
        "ya existe una persona con esa CURP",
        [FieldProblem("curp", "ya está registrada en el padrón")],
    )


async def register(
    session: AsyncSession, data: PersonCreate, caller: Caller, *, units: UnitLookup | None = None
) -> PersonRead:
    """Register a person. `units` checks the assigned unit (without it, one is refused). A
    CURP already registered is a 409, and the attempt is on that person's log: a client that
    may only write would otherwise probe who is registered unseen."""
    await caller.allow(
        Permission.PERSON_CREATE, "identity:person:create", "person", person_curp=data.curp
    )
    await check_unit(session, data.assigned_clues, units)
    actor = caller.actor
    if await repository.curp_exists(session, data.curp):
        # Nothing written yet: the entry goes on its own (the request's transaction rolls back).
        await caller.record("identity:person:create", "person", person_curp=data.curp,
                            outcome="denied", detail=_ALREADY_REGISTERED)  # fmt: skip
        raise _already_registered()
    person = Person(**person_row(data, actor, utcnow()))
    person.affiliations = [Affiliation(**affiliation_row(a)) for a in data.affiliations]
    session.add(person)
    try:
        await session.flush()
    except IntegrityError:
        # Lost a race with another registration of the same CURP. Rolled back first: on
        # SQLite the failed insert keeps the write lock the log's writer needs.
        await session.rollback()
        await caller.record("identity:person:create", "person", person_curp=data.curp,
                            outcome="denied", detail=_ALREADY_REGISTERED)  # fmt: skip
        raise _already_registered() from None
    await caller.record("identity:person:create", "person", person_curp=data.curp, within=session)
    return to_read(person)


async def get_version(session: AsyncSession, curp: str, *, for_update: bool = False) -> int:
    """The current version of a person (no access recorded: callers record their own);
    `for_update`: the person's row locked until the transaction ends."""
    person = await repository.get_by_curp(
        session, curp, for_update=for_update, affiliations=not for_update
    )
    if person is None:
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    return person.version


def entitled_institutions(person: PersonRead, on: date) -> list[int]:
    """DGIS codes of the affiliations in force on a day (active, and within their dates)."""
    return [
        a.institution_code
        for a in person.affiliations
        if a.status is AffiliationStatus.ACTIVE
        and a.valid_from <= on
        and (a.valid_to is None or a.valid_to >= on)
    ]


def check_curp(curp: str, field: str = "curp") -> str:
    """The CURP, or a 422 naming `field` with the reason it is not one."""
    try:
        curp_rules.validate(curp)
    except curp_rules.CurpInvalid as exc:
        raise InvalidInput.on(field, exc.reason) from None
    return curp


async def _read_checked(
    reader: FastReader, curp: str, caller: Caller
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read one person; the access is recorded before the data leaves (and a denial too)."""
    check_curp(curp)
    await caller.allow(Permission.PERSON_READ, "identity:person:read", "person", person_curp=curp)
    if care.needs_basis(caller.principal):
        basis = await care.clinical_basis(reader, caller.principal, curp)
        if basis is None:
            await caller.record(
                "identity:person:read", "person", person_curp=curp, outcome="denied",
                detail={"missing": "care, consent or emergency access"},
            )  # fmt: skip
            raise Forbidden(
                "no hay relación de atención con su unidad ni consentimiento de la persona; "
                "en una urgencia abra un acceso de emergencia con el motivo"
            )
        caller = replace(caller, purpose=basis[0], reason=basis[1])
    found = await repository.read_by_curp(reader, curp)
    if found is None:
        await caller.record("identity:person:read", "person", person_curp=curp, outcome="not_found")
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    await caller.record("identity:person:read", "person", person_curp=curp)
    return found


async def get(reader: FastReader, curp: str, caller: Caller) -> PersonRead:
    return to_read_row(*await _read_checked(reader, curp, caller))


async def get_json(reader: FastReader, curp: str, caller: Caller) -> tuple[bytes, int]:
    """The hot read: the person as PersonRead JSON, built straight from the row (no model
    objects; the shape is PersonRead's, which a test checks), and its version for the ETag."""
    row, affiliations = await _read_checked(reader, curp, caller)
    return read_json(row, affiliations)


def read_json(row: dict[str, Any], affiliations: list[dict[str, Any]]) -> tuple[bytes, int]:
    """PersonRead JSON from a row of `repository.read_by_curp`, and its version."""
    catalog = affiliation_catalog()
    doc = {f: row[f] for f in _READ_FIELDS}
    doc["address"] = (
        {key: row[column] for key, column in _ADDRESS_COLUMNS.items()}
        if row["address_state"] is not None
        else None
    )
    doc["affiliations"] = [
        {
            **a,
            "institution": (
                entry.short_name
                if (entry := catalog.get(a["institution_code"]))
                else str(a["institution_code"])
            ),
        }
        for a in affiliations
    ]
    return orjson.dumps(doc, option=orjson.OPT_UTC_Z), row["version"]


async def change(
    session: AsyncSession,
    curp: str,
    patch: PersonUpdate,
    expected_version: int,
    caller: Caller,
    *,
    units: UnitLookup | None = None,
) -> PersonRead:
    """Apply a partial change as a new version; a stale expected_version is refused (412).
    A change answers the whole record and its version (and a stale one names the current
    version): it needs the read permission too (a machine client with a write scope alone
    read every record through PATCH)."""
    check_curp(curp)
    await caller.allow(
        Permission.PERSON_UPDATE, "identity:person:update", "person", person_curp=curp
    )
    await caller.allow(Permission.PERSON_READ, "identity:person:update", "person", person_curp=curp)
    try:
        return await apply_change(session, curp, patch, expected_version, caller, units=units)
    except NotFound:
        # No one has this CURP (nothing was written): recorded on its own, as a read that
        # finds no one is.
        await caller.record("identity:person:update", "person", person_curp=curp,
                            outcome="not_found")  # fmt: skip
        raise


async def apply_change(
    session: AsyncSession,
    curp: str,
    patch: PersonUpdate,
    expected_version: int,
    caller: Caller,
    *,
    units: UnitLookup | None = None,
) -> PersonRead:
    """The change itself, recorded in the audit log within its transaction. Callers check
    the permission first: `change` (registry staff) or a granted rectification. `units`
    checks a new assigned unit (without it, one is refused)."""
    actor = caller.actor
    person = await repository.get_by_curp(session, curp, for_update=True)
    if person is None:
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    if person.version != expected_version:
        raise PreconditionFailed(
            f"la versión actual es {person.version}, no {expected_version}: "
            "vuelva a leer el registro y repita el cambio",
            [FieldProblem("If-Match", f"versión {expected_version} desactualizada")],
        )
    fields = patch.model_fields_set - {"reason"}
    donor = patch.organ_donor if "organ_donor" in fields else OrganDonor(person.organ_donor)
    donor_date = patch.organ_donor_date if "organ_donor_date" in fields else person.organ_donor_date
    # Judged when the change touches them: a row stored before a rule (a donor date before
    # birth, a unit since replaced) must not block a change of the phone.
    if fields & {"organ_donor", "organ_donor_date"}:
        try:
            check_donor(donor, donor_date, person.birth_date)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise InvalidInput.on(field, reason) from None

    _check_names(person, patch, fields)
    if "assigned_clues" in fields and patch.assigned_clues != person.assigned_clues:
        await check_unit(session, patch.assigned_clues, units)

    before = snapshot(person)
    values: dict[str, Any] = {}
    for field in fields - {"address", "affiliations"}:
        value = getattr(patch, field)
        values[field] = str(value) if field in {"blood_type", "organ_donor"} else value
    if "given_names" in values:
        values["given_names_key"] = search_key(values["given_names"])
    if "first_surname" in values:
        values["first_surname_key"] = search_key(values["first_surname"])
    if "address" in fields:
        values.update(_address_columns(patch.address))
    now = utcnow()
    values.update(updated_at=now, updated_by=actor, change_reason=patch.reason)

    # The compare-and-set first, then the snapshot of the version it replaced: on SQLite,
    # which has no row lock, two changes of one version both pass the check above; the
    # second's UPDATE waits for the first's commit and then matches no row (412). Inserting
    # the snapshot first made it hit uq_person_versions_pv instead (a 409).
    if not await repository.bump_version(session, person.id, expected_version, values):
        raise PreconditionFailed(
            "otra persona modificó el registro al mismo tiempo; vuelva a leerlo",
            [FieldProblem("If-Match", "versión desactualizada")],
        )
    await repository.add_version(
        session,
        PersonVersion(
            person_id=person.id,
            version=person.version,
            snapshot=before,
            recorded_at=now,
            recorded_by=actor,
        ),
    )
    if patch.affiliations is not None:
        await repository.replace_affiliations(
            session, person.id, [affiliation_row(a) for a in patch.affiliations]
        )
    session.expunge(person)
    updated = await repository.get_by_curp(session, curp)
    assert updated is not None
    await caller.record(
        "identity:person:update",
        "person",
        person_curp=curp,
        detail={"version": updated.version, "fields": sorted(fields)},
        within=session,
    )
    return to_read(updated)


_NAMES = ("given_names", "first_surname", "second_surname")


def _check_names(person: Person, patch: PersonUpdate, fields: set[str]) -> None:
    """Changed names must still be the CURP's: a name RENAPO changed comes with a new CURP
    (a person is registered under it), so names that no longer agree are a mistake."""
    changed = fields.intersection(_NAMES)
    if not changed:
        return
    given, first, second = (getattr(patch if f in changed else person, f) for f in _NAMES)
    mismatch = curp_rules.name_mismatch(
        person.curp, given, first, second, person.birth_date, person.sex, person.birth_state
    )
    if mismatch is not None:
        raise InvalidInput.on(sorted(changed)[0], f"la CURP {person.curp} {mismatch}")


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    return [
        FieldChange(field=f, old=old.get(f), new=new.get(f))
        for f in _TRACKED
        if old.get(f) != new.get(f)
    ]


async def history(session: AsyncSession, curp: str, caller: Caller) -> list[PersonVersionRead]:
    """Every version, oldest first: who made it, when, why, and what it changed."""
    check_curp(curp)
    await caller.allow(
        Permission.PERSON_HISTORY, "identity:person:history", "person", person_curp=curp
    )
    person = await repository.get_by_curp(session, curp)
    if person is None:
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    await caller.record("identity:person:history", "person", person_curp=curp)
    snapshots = [v.snapshot for v in await repository.versions(session, person.id)]
    snapshots.append(snapshot(person))
    out: list[PersonVersionRead] = []
    previous: dict[str, Any] = {}
    for snap in snapshots:
        meta = snap["_meta"]
        changes = (
            [FieldChange(field=f, old=None, new=snap.get(f)) for f in _TRACKED if snap.get(f)]
            if not previous
            else _diff(previous, snap)
        )
        out.append(
            PersonVersionRead(
                version=meta["version"],
                recorded_at=datetime.fromisoformat(meta["at"]),
                recorded_by=meta["by"],
                reason=meta["reason"],
                changes=changes,
            )
        )
        previous = snap
    return out


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"p{last_id}".encode()).decode().rstrip("=")


def _after(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        digits = raw.removeprefix("p")
        if digits == raw or not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
            raise ValueError
        after = int(digits)
        if after >= 2**63:  # a row id is a 64-bit integer
            raise ValueError
        return after
    except ValueError:
        raise InvalidInput.on("cursor", "no es un cursor de esta búsqueda") from None


async def search(
    session: AsyncSession,
    reader: FastReader,
    *,
    curp: str | None = None,
    first_surname: str | None = None,
    given_names: str | None = None,
    birth_date: date | None = None,
    birth_state: str | None = None,
    address_state: str | None = None,
    caller: Caller,
    cursor: str | None = None,
    limit: int = 50,
) -> PersonPage:
    """Search by CURP, or by first surname and birth date (optionally narrowed by given
    names and state). A search can never list the registry: every query is a selective
    index look-up (uq_persons_curp or ix_persons_surname_birth). A clinician finds only the
    persons they have a basis for (care, consent, emergency), each recorded with it, as for
    a read: without one, a search by name would disclose who exists and where they live."""
    await caller.allow(Permission.PERSON_SEARCH, "identity:person:search", "person")
    if curp:
        check_curp(curp)
    elif not first_surname or not birth_date:
        missing = "first_surname" if not first_surname else "birth_date"
        raise InvalidInput(
            "indique la CURP, o el primer apellido con la fecha de nacimiento",
            [FieldProblem(missing, "obligatorio si no se busca por CURP")],
        )
    rows = await repository.search(
        session,
        curp=curp,
        first_surname_key=search_key(first_surname) if first_surname else None,
        given_names_key=search_key(given_names) if given_names else None,
        birth_date=birth_date,
        birth_state=birth_state,
        address_state=address_state,
        after_id=_after(cursor),
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        PersonSummary(
            curp=p.curp,
            given_names=p.given_names,
            first_surname=p.first_surname,
            second_surname=p.second_surname,
            birth_date=p.birth_date,
            birth_state=p.birth_state,
            sex=p.sex,
            address_state=p.address_state,
        )
        for p in rows
    ]
    if not care.needs_basis(caller.principal):
        await caller.record_persons("identity:person:search", (p.curp for p in items))
    else:
        bases = await care.clinical_bases(reader, caller.principal, [p.curp for p in items])
        items = [p for p in items if bases.get(p.curp) is not None]
        await care.record_shown(caller, "identity:person:search", (p.curp for p in items), bases)
        # No cursor: a cursor past rows the clinician may not see said that such persons
        # exist (and carried an internal row id). Their search is narrow (a CURP, or a
        # surname with a birth date): one page of what they may see.
        more = False
    return PersonPage(items=items, limit=limit, next_cursor=_cursor(rows[-1].id) if more else None)
