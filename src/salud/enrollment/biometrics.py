"""Fingerprint images from the module's scanner: checks, a quality score, and the matcher
interface.

The checks are what can honestly be measured without a fingerprint SDK: a readable grayscale
image of scanner size (FBI/ISO plain impressions at 500 ppi are about 300-800 px a side),
enough ridge contrast and enough of the frame covered by the finger. The score (0-100) is our
own contrast-and-coverage measure, *not* NIST NFIQ 2; a deployment plugs NFIQ 2 in here.

Duplicate detection by biometrics sits behind `Matcher`. The implementation in use,
`NoMatcher`, compares nothing and says so (`name`): duplicates are caught by CURP (a unique
index) and by the demographic rule (same names, birth date and state) that fills the
supervisors' review queue. A real 1:N matcher (an ABIS) is a separate service to plug in."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from salud.errors import InvalidInput

MAX_BYTES = 1_000_000
MIN_SIDE, MAX_SIDE = 256, 1000
MIN_QUALITY = 40
# Index fingers (ISO/IEC 19794 positions 2 and 7), required from this age on: the ridges of
# young children's fingers are too small for reliable capture at 500 ppi.
REQUIRED_FINGERS = (2, 7)
FINGERPRINT_MIN_AGE = 6
_MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff"}


@dataclass(frozen=True, slots=True)
class FingerprintImage:
    data: bytes
    media_type: str
    width: int
    height: int
    quality: int


def quality_of(pixels: np.ndarray) -> int:
    """0-100 from ridge contrast (local standard deviation) and finger coverage."""
    h, w = pixels.shape
    block = 16
    rows, cols = h // block, w // block
    tiles = pixels[: rows * block, : cols * block].reshape(rows, block, cols, block)
    spread = tiles.std(axis=(1, 3))
    covered = spread > 12.0  # a tile with ridges varies; background is flat
    coverage = float(covered.mean())
    contrast = float(np.median(spread[covered])) if covered.any() else 0.0
    score = min(1.0, contrast / 45.0) * 60 + min(1.0, coverage / 0.5) * 40
    return round(score)


def _grey(image: Image.Image) -> np.ndarray:
    """The pixels as grey 0-255: a scanner's 16-bit image scaled (Pillow's convert("L")
    clips its values at 255, and a good print read as blank)."""
    if image.mode.startswith("I"):
        values = np.asarray(image, np.float32)
        top = float(values.max()) if values.size else 0.0
        scaled: np.ndarray = np.clip(values / (257.0 if top <= 65535 else top / 255.0), 0, 255)
        return scaled
    return np.asarray(image if image.mode == "L" else image.convert("L"), np.float32)


def check_fingerprint(data: bytes, finger: int) -> FingerprintImage:
    """A readable PNG, JPEG or TIFF of scanner size and enough quality, or InvalidInput."""
    field = f"fingerprints.{finger}"
    if not 1 <= finger <= 10:
        raise InvalidInput.on("finger", "la posición del dedo va de 1 a 10 (ISO/IEC 19794)")
    if not data:
        raise InvalidInput.on(field, "la imagen está vacía")
    if len(data) > MAX_BYTES:
        raise InvalidInput.on(field, "la imagen pesa más de 1 MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Format and size come from the header: checked before any pixel is decoded, so
            # a small file claiming a huge image costs nothing.
            kind, (width, height) = image.format, image.size
            if kind not in _MEDIA:
                raise InvalidInput.on(field, f"formato {kind} no admitido (PNG, JPEG o TIFF)")
            if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
                raise InvalidInput.on(
                    field,
                    f"mide {width}×{height}; cada lado debe medir de {MIN_SIDE} a {MAX_SIDE} px",
                )
            gray = _grey(image)
    # Pillow reports some damaged PNG chunks (a bad checksum or length) as SyntaxError.
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise InvalidInput.on(field, "no es una imagen PNG, JPEG o TIFF legible") from None
    quality = quality_of(gray)
    if quality < MIN_QUALITY:
        raise InvalidInput.on(
            field, f"calidad {quality} (mínimo {MIN_QUALITY}): limpie el lector y repita la toma"
        )
    return FingerprintImage(data, _MEDIA[kind], width, height, quality)


def required_fingers(age: int) -> tuple[int, ...]:
    return REQUIRED_FINGERS if age >= FINGERPRINT_MIN_AGE else ()


class Matcher(Protocol):
    """1:N biometric search: CURPs of enrolled persons whose prints match these."""

    name: str

    def candidates(self, curp: str, prints: dict[int, bytes]) -> list[str]: ...


class NoMatcher:
    """No biometric matching: stated openly wherever the matcher's name is shown."""

    name = "sin cotejo biométrico (solo CURP y regla demográfica)"

    def candidates(self, curp: str, prints: dict[int, bytes]) -> list[str]:
        return []
