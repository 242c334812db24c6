"""The credential over HTTP: published keys, issuance and life cycle, card images, the
citizen's digital card, and validation (reception and public). Print files come only from
the module's print batches (api/enrollment.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request as StarletteRequest
from starlette.routing import BaseRoute, Route

from salud.access.permissions import Permission
from salud.api.deps import CurrentCaller, Reader, ReadSession, Session, caller_of
from salud.credentials import service, signing
from salud.credentials.schemas import (
    CredentialRead,
    DigitalCardRead,
    IssueRequest,
    PublicValidationRead,
    ScanIn,
    StatusChange,
    ValidationRead,
)
from salud.credentials.signing import Signer
from salud.enrollment import printing
from salud.errors import DomainError
from salud.identity import guardians, photos
from salud.identity.schemas import PhotoVersionRead, WardRead
from salud.kit.streams import read_at_most

router = APIRouter(tags=["credencial"])
wellknown = APIRouter(tags=["credencial"])
CredentialId = Annotated[str, Path(pattern=r"^[a-z2-7]{16}$", description="Identificador opaco")]


def _x(permission: Permission | str) -> dict[str, str]:
    return {"x-permission": permission if isinstance(permission, str) else permission.value}


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def _config(request: Request) -> service.CredentialConfig:
    config: service.CredentialConfig = request.app.state.credential_config
    return config


# A new key signs at once and the retired one covers cards for RETIRE_GRACE after a
# rotation; this process may serve a key set up to CACHE_SECONDS old, so a verifier's cached
# copy on top of that must not outlive the overlap: 30 s.
KEYS_MAX_AGE = int(signing.RETIRE_GRACE.total_seconds() - signing.CACHE_SECONDS)
KEYS_CACHE_CONTROL = f"public, max-age={KEYS_MAX_AGE}"


class TooManyRequests(DomainError):
    def __init__(self, wait: int, what: str = "validaciones") -> None:
        super().__init__(
            f"demasiadas {what} desde esta dirección; espere {wait} s", [], 429,
            "Demasiadas solicitudes", "rate-limited",
        )  # fmt: skip
        self.wait = wait  # Retry-After (api/problems.py renders it for any rate limit)


@wellknown.get(
    "/.well-known/cose-keys",
    summary="Llaves públicas de firma (COSE Key Set, RFC 9052)",
    response_class=Response,
    openapi_extra=_x("public"),
)
async def cose_keys(request: Request) -> Response:
    keys = await _signer(request).keys()
    return Response(
        keys.to_cose(), media_type="application/cose-key-set",
        headers={"Cache-Control": KEYS_CACHE_CONTROL},
    )  # fmt: skip


@wellknown.get(
    "/.well-known/jwks.json",
    summary="Llaves públicas de firma (JWKS, RFC 7517), vigentes y retiradas",
    openapi_extra=_x("public"),
)
async def jwks(request: Request, response: Response) -> dict[str, object]:
    response.headers["Cache-Control"] = KEYS_CACHE_CONTROL
    return (await _signer(request).keys()).to_jwks()


@router.post(
    "/persons/{curp}/credentials",
    status_code=status.HTTP_201_CREATED,
    summary="Expedir la credencial (o reponerla: extravío, daño, renovación, cambio de datos)",
    openapi_extra=_x(Permission.CREDENTIAL_ISSUE),
    description="Una reposición (lost, damaged, renewal, update) reemplaza la credencial "
    "vigente. Después de una revocación solo un supervisor (credential:revoke) expide una "
    "nueva, con reason reinstatement y una nota (note) que diga por qué; la revocada sigue "
    "revocada.",
)
async def issue(
    curp: str, body: IssueRequest, request: Request, session: Session, caller: CurrentCaller
) -> CredentialRead:
    return await service.issue(
        session, _signer(request), request.app.state.keyring, _config(request), curp,
        body.reason, caller, note=body.note,
    )  # fmt: skip


@router.get(
    "/persons/{curp}/credentials",
    summary="Credenciales de una persona y su estado",
    openapi_extra=_x(Permission.CREDENTIAL_READ),
)
async def list_credentials(
    curp: str, session: ReadSession, caller: CurrentCaller
) -> list[CredentialRead]:
    return await service.list_for_person(session, curp, caller)


@router.post(
    "/credentials/{credential_id}/status",
    summary="Suspender, reactivar o revocar una credencial (supervisión)",
    openapi_extra=_x(Permission.CREDENTIAL_REVOKE),
    description="Solo suspended, active (reactivar una suspendida) y revoked, con "
    "credential:revoke. Impresa, lista para entrega y entregada no se asignan aquí: las "
    "registran los lotes de impresión y la entrega en el módulo "
    "(/api/v1/enrollment/print-batches y /api/v1/enrollment/cards/{credential_id}/delivery), "
    "que comprueban el lote, el módulo y la identidad de quien recibe.",
)
async def change_status(
    credential_id: CredentialId, body: StatusChange, session: Session, caller: CurrentCaller
) -> CredentialRead:
    return await printing.change_card_status(session, credential_id, body, caller)


@router.get(
    "/credentials/{credential_id}/card/{side}",
    summary="Imagen PNG de la tarjeta (frente o reverso, 300 ppp)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    openapi_extra=_x(Permission.CREDENTIAL_READ),
)
async def card_png(
    credential_id: CredentialId,
    side: Literal["front", "back"],
    request: Request,
    session: ReadSession,
    caller: CurrentCaller,
) -> Response:
    data = await service.card_image(
        session, request.app.state.keyring, _config(request), credential_id, side, caller
    )
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/me/digital-card",
    summary="Mi credencial digital (QR firmado con mi derechohabiencia de este momento)",
    openapi_extra=_x(Permission.CREDENTIAL_READ),
)
async def digital_card(
    request: Request, session: ReadSession, caller: CurrentCaller, response: Response
) -> DigitalCardRead:
    response.headers["Cache-Control"] = "no-store"
    return await service.digital_card(session, _signer(request), _config(request), caller)


@router.get(
    "/me/wards",
    summary="Las personas menores de edad por las que respondo (madre, padre o tutor)",
    openapi_extra=_x(Permission.PERSON_READ),
)
async def my_wards(session: ReadSession, caller: CurrentCaller) -> list[WardRead]:
    return await guardians.my_wards(session, caller)


@router.get(
    "/me/wards/{curp}/digital-card",
    summary="La credencial digital de una persona menor de edad por la que respondo",
    openapi_extra=_x(Permission.CREDENTIAL_READ),
)
async def ward_digital_card(
    curp: str, request: Request, session: ReadSession, caller: CurrentCaller, response: Response
) -> DigitalCardRead:
    response.headers["Cache-Control"] = "no-store"
    return await service.digital_card(
        session, _signer(request), _config(request), caller, holder_curp=curp
    )


@router.post(
    "/credentials/validate",
    summary="Validar una credencial escaneada (recepción): veredicto, foto, derechohabiencia",
    openapi_extra=_x(Permission.CREDENTIAL_VALIDATE),
)
async def validate(
    body: ScanIn, request: Request, reader: Reader, caller: CurrentCaller
) -> ValidationRead:
    """Documents the validation; requests are served by `validate_fast` below."""
    keys = await _signer(request).keys()
    return await service.validate(reader, keys, request.app.state.keyring, body.qr, caller)


async def validate_fast(request: StarletteRequest) -> Response:
    """The reception desk's hot path as a plain Starlette endpoint, as the person read is
    (GUIDE.md; bench/RESULTS.md): same checks, same service, same errors."""
    caller = caller_of(request)
    try:
        body = ScanIn.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None
    keys = await _signer(request).keys()
    result = await service.validate(
        request.app.state.reader, keys, request.app.state.keyring, body.qr, caller
    )
    return Response(result.model_dump_json(), media_type="application/json")


def fast_routes(prefix: str) -> list[BaseRoute]:
    """Routes to put ahead of the FastAPI router; their FastAPI twins stay for the OpenAPI
    document."""
    return [Route(f"{prefix}/credentials/validate", validate_fast, methods=["POST"])]


@router.post(
    "/public/credentials/validate",
    summary="Validación pública: válida o no y si es la tarjeta vigente (sin datos personales)",
    response_model=PublicValidationRead,
    openapi_extra=_x("public"),
)
async def public_validate(body: ScanIn, request: Request, reader: Reader) -> PublicValidationRead:
    host = request.client.host if request.client else "?"
    wait = request.app.state.public_validation_limiter.hit(host)
    if wait:
        raise TooManyRequests(wait)
    keys = await _signer(request).keys()
    return await service.public_validate(reader, keys, body.qr, request.app.state.audit)


@router.put(
    "/persons/{curp}/photo",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Fotografía de la persona (JPEG, PNG o WebP; la que muestra la tarjeta)",
    openapi_extra={
        **_x(Permission.PERSON_UPDATE),
        "requestBody": {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
    },
)
async def put_photo(
    curp: str, request: Request, session: Session, caller: CurrentCaller
) -> Response:
    # Never more than the limit in memory, whoever sends it: past it, the photo's own check
    # (after the permission) refuses it as too large; the rest is never read.
    raw = await read_at_most(request.stream(), photos.MAX_BYTES)
    await photos.put_photo(session, request.app.state.keyring, curp, raw, caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/persons/{curp}/photo/history",
    summary="Historial de fotografías: quién tomó cada una y quién la reemplazó",
    response_model=list[PhotoVersionRead],
    openapi_extra=_x(Permission.PERSON_HISTORY),
)
async def photo_history(
    curp: str, session: ReadSession, caller: CurrentCaller
) -> list[PhotoVersionRead]:
    return await photos.photo_history(session, curp, caller)


@router.get(
    "/persons/{curp}/photo/versions/{version}",
    summary="Una fotografía del historial (la actual incluida)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
    openapi_extra=_x(Permission.PERSON_HISTORY),
)
async def photo_version(
    curp: str,
    version: Annotated[int, Path(ge=1, le=1_000_000)],
    request: Request,
    session: ReadSession,
    caller: CurrentCaller,
) -> Response:
    photo = await photos.photo_version(session, request.app.state.keyring, curp, version, caller)
    return Response(photo.data, media_type=photo.media_type, headers={"Cache-Control": "no-store"})


class KeyRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alg: Literal["EdDSA", "ES256"] = "EdDSA"


@router.post(
    "/signing-keys/rotate",
    status_code=status.HTTP_201_CREATED,
    summary="Rotar la llave de firma (la anterior queda publicada como retirada)",
    openapi_extra=_x(Permission.SIGNING_KEY_MANAGE),
)
async def rotate_key(
    body: KeyRotation, request: Request, session: Session, caller: CurrentCaller
) -> dict[str, str]:
    kid = await service.rotate_key(
        session, request.app.state.keyring, -8 if body.alg == "EdDSA" else -7, caller
    )
    _signer(request).forget()
    return {"kid": kid}
