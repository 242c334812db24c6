"""The image checks of the photo and the fingerprints on files as cameras and scanners, or
damage on the way, leave them: a damaged PNG is a 422 reason, never an uncaught error; a
phone's photo with an EXIF rotation is judged, and kept, the right way up."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from salud.enrollment.biometrics import check_fingerprint
from salud.errors import InvalidInput
from salud.identity.photos import MAX_BYTES, check_photo
from salud.identity.synth import synthetic_face, synthetic_fingerprint


def _png(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, "PNG")
    return out.getvalue()


def _damaged(png: bytes) -> list[bytes]:
    """A flipped byte inside the first IDAT (bad checksum), and the IDAT's length lowered
    (a chunk cut short): the two ways Pillow reports as SyntaxError."""
    at = png.index(b"IDAT")
    flipped = bytearray(png)
    flipped[at + 10] ^= 0xFF
    shortened = bytearray(png)
    length = int.from_bytes(png[at - 4 : at], "big")
    shortened[at - 4 : at] = (length - 100).to_bytes(4, "big")
    return [bytes(flipped), bytes(shortened)]


def test_a_damaged_png_is_a_reason_for_the_photo_and_the_prints() -> None:
    for bad in _damaged(_png(synthetic_face(1))):
        with pytest.raises(InvalidInput) as refused:
            check_photo(bad)
        assert refused.value.problems[0].field == "photo"
    for bad in _damaged(synthetic_fingerprint(2)):
        with pytest.raises(InvalidInput) as refused:
            check_fingerprint(bad, 2)
        assert refused.value.problems[0].field == "fingerprints.2"


def test_a_photo_stored_sideways_with_an_exif_rotation_is_kept_upright() -> None:
    upright = Image.open(io.BytesIO(synthetic_face(3)))  # 300 × 375, portrait
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # as the sensor stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    out = io.BytesIO()
    sideways.save(out, "JPEG", exif=exif, quality=95)
    photo = check_photo(out.getvalue())
    assert (photo.width, photo.height) == upright.size
    kept = Image.open(io.BytesIO(photo.data))
    assert kept.size == upright.size
    assert kept.getexif().get(0x0112, 1) == 1  # no rotation left for a viewer to apply
    # Without the tag, the same sideways pixels are a landscape photo, refused.
    plain = io.BytesIO()
    sideways.save(plain, "JPEG", quality=95)
    with pytest.raises(InvalidInput, match="vertical"):
        check_photo(plain.getvalue())


def test_the_weight_limit_is_the_uploads_not_the_upright_copys() -> None:
    """Turned upright, a phone's JPEG is encoded again and may weigh more than the file sent
    (here 1.6 MB sent, 2.3 MB kept): the 2 MB limit is on what the person sent."""
    rng = np.random.default_rng(7)
    h, w = 3264, 2448
    base = np.linspace(60, 200, h * w).reshape(h, w)
    pixels = (base[..., None] + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype("uint8")
    sideways = Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    sideways.save(out, "JPEG", quality=80, exif=exif)
    sent = out.getvalue()
    assert len(sent) < MAX_BYTES
    photo = check_photo(sent)
    assert (photo.width, photo.height) == (w, h)


def _sixteen_bit(png: bytes, kind: str = "PNG") -> bytes:
    """The same picture, grey, 16 bits a sample (as some scanners and cameras save it)."""
    import numpy as np

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.uint16) * 257
    out = io.BytesIO()
    Image.fromarray(grey).save(out, kind)
    return out.getvalue()


def test_sixteen_bit_images_are_read_as_what_they_show() -> None:
    """Pillow's convert("L") clips 16-bit values at 255: a good fingerprint scored 0 ("clean
    the reader") and a face read as blank. A print is now scaled; a photo (which the card
    prints) is refused with the true reason."""
    from salud.enrollment.biometrics import MIN_QUALITY, check_fingerprint
    from salud.identity.synth import synthetic_face, synthetic_fingerprint

    for kind in ("PNG", "TIFF"):
        checked = check_fingerprint(_sixteen_bit(synthetic_fingerprint(5), kind), 1)
        assert checked.quality >= MIN_QUALITY, kind
    with pytest.raises(InvalidInput, match="16 bits"):
        check_photo(_sixteen_bit(synthetic_face(3)))
