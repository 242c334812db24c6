"""The person's photo: checked (format, size, dimensions), sealed at rest, read for the card
and for the face-to-face check at reception."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.errors import InvalidInput, NotFound
from salud.identity import repository
from salud.identity.models import PersonPhoto, PersonPhotoVersion
from salud.identity.schemas import PhotoVersionRead
from salud.identity.service import check_curp
from salud.kit.clock import utcnow
from salud.kit.sealing import Keyring, open_sealed, seal

MAX_BYTES = 2_000_000
MIN_SIDE, MAX_SIDE = 240, 4000
# Brightness of the photo, 0-255 (see _check_light).
MIN_CONTRAST, MIN_MEAN, MAX_MEAN = 12.0, 35.0, 225.0
_MEDIA = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True, slots=True)
class Photo:
    data: bytes
    media_type: str
    width: int
    height: int


def check_photo(data: bytes) -> Photo:
    """A JPEG, PNG or WebP of reasonable size, portrait or square, or InvalidInput."""
    if not data:
        raise InvalidInput.on("photo", "está vacía")
    if len(data) > MAX_BYTES:
        raise InvalidInput.on("photo", f"pesa más de {MAX_BYTES // 1_000_000} MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
            # Checked from the header, before any pixel is decoded (a small file may claim
            # a huge image).
            if kind not in _MEDIA:
                raise InvalidInput.on("photo", f"formato {kind} no admitido (JPEG, PNG o WebP)")
            if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
                raise InvalidInput.on(
                    "photo",
                    f"mide {width}×{height}; cada lado debe medir de {MIN_SIDE} a {MAX_SIDE} px",
                )
            if image.mode.startswith("I"):  # 16 bits a sample: grey read as blank, said so
                raise InvalidInput.on(
                    "photo", "tiene 16 bits por muestra: guárdela en 8 bits (JPEG o PNG común)"
                )
            image.verify()
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            seen: Image.Image = opened
            if opened.getexif().get(_ORIENTATION, 1) != 1:
                # A phone's photo stored sideways with an EXIF rotation: kept upright, as it
                # is seen, so that the checks and the card see the face the right way up
                # (re-encoded, it may weigh more than the upload; the limit is the upload's).
                seen = ImageOps.exif_transpose(opened)
                data = _encoded(seen, kind)
                width, height = seen.size
            light = _light(seen)
    # Pillow reports some damaged PNG chunks (a bad checksum or length) as SyntaxError.
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise InvalidInput.on("photo", "no es una imagen JPEG, PNG o WebP legible") from None
    if width > height * 1.1:
        raise InvalidInput.on("photo", "debe ser vertical o cuadrada (retrato)")
    _check_light(*light)
    return Photo(data, _MEDIA[kind], width, height)


_ORIENTATION = 0x0112  # EXIF Orientation


def _encoded(image: Image.Image, kind: str) -> bytes:
    out = io.BytesIO()
    if kind == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=92)
    else:
        image.save(out, kind)
    return out.getvalue()


def _light(image: Image.Image) -> tuple[float, float]:
    """(mean, standard deviation) of the brightness, 0-255, on a small grey copy."""
    grey = image.convert("L")
    grey.thumbnail((96, 96))
    stats = ImageStat.Stat(grey)
    return float(stats.mean[0]), float(stats.stddev[0])


def _check_light(mean: float, spread: float) -> None:
    """A face must be seen on the card: not a blank or one-colour image, not too dark or too
    bright (a lens covered, a flash into the camera). The thresholds are generous: they catch
    failed captures, not a merely poor photo, which the operator judges on the screen."""
    if spread < MIN_CONTRAST:
        raise InvalidInput.on("photo", "no tiene contraste: parece en blanco o de un solo color")
    if mean < MIN_MEAN:
        raise InvalidInput.on("photo", "está demasiado oscura; tómela de nuevo con más luz")
    if mean > MAX_MEAN:
        raise InvalidInput.on("photo", "está demasiado clara (sobreexpuesta); tómela de nuevo")


def _associated(curp: str) -> bytes:
    return b"person-photo:" + curp.encode()


def open_photo(sealed: bytes, ring: Keyring, curp: str) -> bytes:
    """The photo bytes of a sealed value read from `person_photos` (bound to its CURP)."""
    return open_sealed(sealed, ring, _associated(curp))


async def put_photo(
    session: AsyncSession, ring: Keyring, curp: str, data: bytes, caller: Caller
) -> int:
    """Store (or replace) the photo; its new version. Audited in the same transaction."""
    check_curp(curp)
    await caller.allow(Permission.PERSON_UPDATE, "identity:photo:update", "photo", person_curp=curp)
    photo = check_photo(data)
    if not await repository.curp_exists(session, curp):
        # The answer tells that no one has this CURP: on the log, as a read that finds no one
        # is (nothing written yet; the entry goes on its own, the request rolls back).
        await caller.record("identity:photo:update", "photo", person_curp=curp,
                            outcome="not_found")  # fmt: skip
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    row = await session.scalar(
        select(PersonPhoto).where(PersonPhoto.person_curp == curp).with_for_update()
    )
    sealed = seal(photo.data, ring, _associated(curp))
    now = utcnow()
    if row is None:
        row = PersonPhoto(person_curp=curp, version=1)
        session.add(row)
    else:
        session.add(PersonPhotoVersion(
            person_curp=curp, version=row.version, image_sealed=row.image_sealed,
            media_type=row.media_type, width=row.width, height=row.height,
            taken_at=row.updated_at, taken_by=row.updated_by, replaced_at=now,
            replaced_by=caller.actor,
        ))  # fmt: skip
        row.version += 1
    row.image_sealed, row.media_type = sealed, photo.media_type
    row.width, row.height = photo.width, photo.height
    row.updated_at, row.updated_by = now, caller.actor
    await session.flush()
    await caller.record(
        "identity:photo:update", "photo", person_curp=curp, within=session,
        detail={"version": row.version, "bytes": len(data)},
    )  # fmt: skip
    return row.version


async def stored_photo(session: AsyncSession, ring: Keyring, curp: str) -> Photo | None:
    """The photo, opened (no access check: callers are services that already checked and
    audited the access they serve it for)."""
    row = await session.scalar(select(PersonPhoto).where(PersonPhoto.person_curp == curp))
    if row is None:
        return None
    data = open_photo(row.image_sealed, ring, curp)
    return Photo(data, row.media_type, row.width, row.height)


async def photo_history(session: AsyncSession, curp: str, caller: Caller) -> list[PhotoVersionRead]:
    """Every photo the person has had, oldest first: who took it and when, and who replaced
    it (the current one last, not replaced). Audited as a read of the history."""
    check_curp(curp)
    await caller.allow(
        Permission.PERSON_HISTORY, "identity:photo:history", "photo", person_curp=curp
    )
    current = await session.scalar(select(PersonPhoto).where(PersonPhoto.person_curp == curp))
    if current is None and not await repository.curp_exists(session, curp):
        await caller.record("identity:photo:history", "photo", person_curp=curp,
                            outcome="not_found")  # fmt: skip
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    earlier = await session.scalars(
        select(PersonPhotoVersion)
        .where(PersonPhotoVersion.person_curp == curp)
        .order_by(PersonPhotoVersion.version)
    )
    out = [PhotoVersionRead.model_validate(v, from_attributes=True) for v in earlier]
    if current is not None:
        out.append(PhotoVersionRead(
            version=current.version, media_type=current.media_type, width=current.width,
            height=current.height, taken_at=current.updated_at, taken_by=current.updated_by,
        ))  # fmt: skip
    await caller.record("identity:photo:history", "photo", person_curp=curp)
    return out


async def photo_version(
    session: AsyncSession, ring: Keyring, curp: str, version: int, caller: Caller
) -> Photo:
    """One photo of the person's history (the current one included), opened. Audited. The
    face itself needs the read permission too (an auditor sees the history, not the faces)."""
    check_curp(curp)
    for needed in (Permission.PERSON_HISTORY, Permission.PERSON_READ):
        await caller.allow(needed, "identity:photo:read", "photo", person_curp=curp)
    current = await session.scalar(select(PersonPhoto).where(PersonPhoto.person_curp == curp))
    row: PersonPhoto | PersonPhotoVersion | None = current
    if current is None or current.version != version:
        row = await session.scalar(
            select(PersonPhotoVersion).where(
                PersonPhotoVersion.person_curp == curp, PersonPhotoVersion.version == version
            )
        )
    if row is None:
        raise NotFound(f"la persona no tiene una fotografía versión {version}")
    await caller.record(
        "identity:photo:read", "photo", person_curp=curp, detail={"version": version}
    )
    return Photo(open_photo(row.image_sealed, ring, curp), row.media_type, row.width, row.height)
