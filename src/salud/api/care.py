"""/api/v1: care relationships, consents and break-the-glass emergency access."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from salud.access import care
from salud.access.permissions import Permission
from salud.access.schemas import (
    CareCreate,
    CareRead,
    ConsentCreate,
    ConsentRead,
    EmergencyOpen,
    EmergencyRead,
    EmergencyReview,
)
from salud.api.deps import CurrentCaller, ReadSession, Session
from salud.errors import InvalidInput, NotFound
from salud.facilities import service as facilities
from salud.facilities.institutions import AFFILIATION_CODE
from salud.identity import repository as persons
from salud.identity.catalogs import NON_INSTITUTION_CODES, affiliation_catalog
from salud.records import service as records
from salud.records.schemas import Restrictions

router = APIRouter(tags=["atención y consentimiento"])
_MAX_ID = 2**63 - 1  # BIGINT: a larger number is a 422, not a database error
# The CURP's shape (18 characters, letters and digits where the standard puts them): anything
# else is a 422 naming `curp`, before any permission or database work.
Curp = Annotated[
    str, Path(pattern=r"^[A-Z]{4}[0-9]{6}[HMX][A-Z]{5}[0-9A-Z][0-9]$", description="CURP")
]


async def _registered(session: Session, curp: str) -> bool:
    return await persons.curp_exists(session, curp)


def _x(permission: Permission) -> dict[str, str]:
    return {"x-permission": permission.value}


@router.post(
    "/persons/{curp}/care-relationships",
    status_code=status.HTTP_201_CREATED,
    summary="La persona se atiende en mi unidad (consulta o cita)",
    openapi_extra=_x(Permission.CARE_RECORD),
)
async def record_care(
    curp: Curp, body: CareCreate, session: Session, caller: CurrentCaller
) -> CareRead:
    return await care.record_care(session, caller, curp, body, await _registered(session, curp))


@router.post(
    "/persons/{curp}/consents",
    status_code=status.HTTP_201_CREATED,
    summary="Autorizar a una institución o unidad a consultar mis datos",
    openapi_extra=_x(Permission.CONSENT_MANAGE),
)
async def grant_consent(
    curp: Curp, body: ConsentCreate, session: Session, caller: CurrentCaller
) -> ConsentRead:
    registered = await _registered(session, curp)
    return await care.grant_consent(
        session, caller, curp, body, registered, lambda: _check_consent_target(session, body)
    )


async def _check_consent_target(session: Session, body: ConsentCreate) -> None:
    """A consent names an institution of the DGIS catalog and, if a unit, one of the CLUES
    of that institution: a typo would authorize nobody (or someone else) while the person
    believes their doctor may read. (The catalogs sit above the access layer, so the check is
    made here, before the service records the consent.)"""
    code = body.institution_code
    catalog = affiliation_catalog()
    if code not in catalog or code in NON_INSTITUTION_CODES or code == OTHER:
        raise InvalidInput.on("institution_code", f"{code} no es una institución del catálogo DGIS")
    if not catalog[code].active:  # Seguro Popular, INSABI: no one acts for them any more
        raise InvalidInput.on("institution_code", f"{catalog[code].short_name} ya no existe")
    if body.clues is None:
        return
    try:
        unit = await facilities.get_unit(session, body.clues)
    except NotFound:
        raise InvalidInput.on("clues", f"{body.clues} no está en el catálogo CLUES") from None
    if unit.replaced_by is not None:  # staff there now act under the new key
        raise InvalidInput.on("clues", f"{body.clues} es ahora la unidad {unit.replaced_by}")
    owner = AFFILIATION_CODE.get(unit.institution_code)
    if owner is not None and code not in (owner, care.INSTITUTION_ALIAS.get(owner, owner)):
        raise InvalidInput.on(
            "clues",
            f"{body.clues} es una unidad de {unit.institution}, no de la institución {code}",
        )


OTHER = 8  # DGIS's «OTRA» names no institution


@router.get(
    "/persons/{curp}/consents",
    summary="Mis autorizaciones",
    openapi_extra=_x(Permission.CONSENT_MANAGE),
)
async def list_consents(
    curp: Curp, session: ReadSession, caller: CurrentCaller
) -> list[ConsentRead]:
    return await care.consents(session, caller, curp)


@router.post(
    "/persons/{curp}/consents/{consent_id}/revoke",
    summary="Retirar una autorización",
    openapi_extra=_x(Permission.CONSENT_MANAGE),
)
async def revoke_consent(
    curp: Curp,
    consent_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
    session: Session,
    caller: CurrentCaller,
) -> ConsentRead:
    return await care.revoke_consent(session, caller, curp, consent_id)


@router.post(
    "/persons/{curp}/emergency-access",
    status_code=status.HTTP_201_CREATED,
    summary="Acceso de emergencia (romper el cristal): con motivo, por 4 horas, auditado",
    openapi_extra=_x(Permission.EMERGENCY_OPEN),
)
async def open_emergency(
    curp: Curp, body: EmergencyOpen, session: Session, caller: CurrentCaller
) -> EmergencyRead:
    registered = await _registered(session, curp)
    return await care.open_emergency(session, caller, curp, body, registered)


@router.get(
    "/emergency-accesses",
    summary="Accesos de emergencia por revisar",
    openapi_extra=_x(Permission.AUDIT_READ),
)
async def unreviewed(
    session: ReadSession,
    caller: CurrentCaller,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[EmergencyRead]:
    return await care.unreviewed(session, caller, limit)


@router.post(
    "/emergency-accesses/{emergency_id}/review",
    summary="Revisar un acceso de emergencia",
    openapi_extra=_x(Permission.ACCESS_REVIEW),
)
async def review(
    emergency_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
    body: EmergencyReview,
    session: Session,
    caller: CurrentCaller,
) -> EmergencyRead:
    return await care.review(session, caller, emergency_id, body)


@router.get(
    "/persons/{curp}/record-restrictions",
    summary="Categorías sensibles de mi expediente restringidas a la institución que las registró",
    openapi_extra=_x(Permission.CONSENT_MANAGE),
)
async def record_restrictions(
    curp: Curp, session: ReadSession, caller: CurrentCaller
) -> Restrictions:
    found = await records.restrictions(session, caller, curp)
    return Restrictions.model_validate({"categories": found})


@router.put(
    "/persons/{curp}/record-restrictions",
    summary="Restringir categorías sensibles (salud mental, sexual y reproductiva, VIH)",
    openapi_extra=_x(Permission.CONSENT_MANAGE),
)
async def set_record_restrictions(
    curp: Curp, body: Restrictions, session: Session, caller: CurrentCaller
) -> Restrictions:
    chosen = await records.set_restrictions(session, caller, curp, list(body.categories))
    return Restrictions.model_validate({"categories": chosen})


@router.get(
    "/care-relationships",
    summary="Relaciones de atención registradas por el propio personal clínico, por revisar",
    openapi_extra=_x(Permission.AUDIT_READ),
)
async def unreviewed_care(
    session: ReadSession,
    caller: CurrentCaller,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[CareRead]:
    return await care.unreviewed_care(session, caller, limit)


@router.post(
    "/care-relationships/{care_id}/review",
    summary="Revisar una relación de atención registrada por el propio personal clínico",
    openapi_extra=_x(Permission.ACCESS_REVIEW),
)
async def review_care(
    care_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
    body: EmergencyReview,
    session: Session,
    caller: CurrentCaller,
) -> CareRead:
    return await care.review_care(session, caller, care_id, body)
