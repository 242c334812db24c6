"""Card rendering: ID-1 (ISO/IEC 7810, 85.60 × 53.98 mm) front and back, as PNG and PDF.

Front: photo and identity. Back: the signed QR (validation) and the short-link QR (nearest
units). Raster at 300 dpi, the resolution card printers print at; each QR module is a whole
number of pixels so that it prints sharp. The PDF places the same rasters on pages of the
card's size (two pages per card), which is what a card printer's driver takes; a print batch
is one PDF with every card of the batch.

QR choices (for cheap phone cameras and worn plastic): error correction M (15 %), a quiet
zone of 4 modules, modules of 0.51 mm (6 px) for the signed QR and 0.68 mm (8 px) for the
link; the alphanumeric mode, which Base45 was designed for. The mask is fixed (pattern 2):
segno's search over the eight masks costs about 30 ms per code and the fixed one scans as
well in the round-trip tests (zxing-cpp on the rendered image)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import cast

import reportlab
import reportlab.rl_config
import segno
from PIL import Image, ImageDraw, ImageFont, ImageOps
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas
from segno import consts as segno_consts

DPI = 300
WIDTH_MM, HEIGHT_MM = 85.60, 53.98
WIDTH_PX, HEIGHT_PX = round(WIDTH_MM / 25.4 * DPI), round(HEIGHT_MM / 25.4 * DPI)  # 1011 × 638
SIGNED_MODULE_PX, LINK_MODULE_PX = 6, 8
QR_MASK = 2
GREEN, GOLD, INK = (35, 91, 78), (188, 149, 92), (30, 30, 30)
_SEX = {"H": "Hombre", "M": "Mujer", "X": "No binario"}
_DONOR = {"yes": "Sí", "no": "No", "not_stated": "No manifestado"}


@dataclass(frozen=True, slots=True)
class CardView:
    """Everything printed on a card."""

    given_names: str
    surnames: str
    curp: str
    birth_date: date
    birth_state: str
    sex: str
    nationality: str
    blood_type: str
    organ_donor: str
    institutions: Sequence[str]
    assigned_unit: str | None
    photo: bytes | None
    signed_qr: str
    link: str
    credential_id: str
    sequence: int
    issued_at: datetime
    expires_at: datetime


def make_qr(text: str, *, alphanumeric: bool = True) -> segno.QRCode:
    return segno.make(
        text,
        error="m",
        mode="alphanumeric" if alphanumeric else None,
        mask=QR_MASK,
        boost_error=False,
        micro=False,
    )


def qr_version(text: str) -> int:
    """The version (size) of the QR `make_qr` makes of an alphanumeric text (Base45 is),
    without encoding it: the segment's bit length (ISO/IEC 18004 §7.4.4: mode indicator,
    character count of 9/11/13 bits by version range, 11 bits per pair and 6 for a last odd
    character) against segno's data capacity table at level M."""
    capacity = cast("dict[int, dict[int, int]]", segno_consts.SYMBOL_CAPACITY)
    n = len(text)
    payload = 11 * (n // 2) + 6 * (n % 2)
    for version in range(1, 41):
        count_bits = 9 if version < 10 else 11 if version < 27 else 13
        if capacity[version][segno_consts.ERROR_LEVEL_M] >= 4 + count_bits + payload:
            return version
    raise ValueError("el texto no cabe en un código QR")


def qr_image(code: segno.QRCode, module_px: int) -> Image.Image:
    """A 1-bit image of the code with its 4-module quiet zone, module_px per module."""
    size = int(code.symbol_size(scale=1, border=4)[0])
    image = Image.new("1", (size, size), 1)
    pixels = image.load()
    assert pixels is not None
    for y, row in enumerate(code.matrix):
        for x, dark in enumerate(row):
            if dark:
                pixels[x + 4, y + 4] = 0
    return image.resize((size * module_px, size * module_px), Image.Resampling.NEAREST)


# Bitstream Vera, shipped inside reportlab (a pinned dependency): Spanish accents and Ñ,
# and the same glyphs on every machine.
_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
# Binary image streams: ASCII85 (reportlab's default, for 7-bit channels) is encoded in pure
# Python here and took three quarters of a print file's time (bench/RESULTS.md).
reportlab.rl_config.useA85 = 0
_FONTS: dict[tuple[int, bool], ImageFont.FreeTypeFont] = {}


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    key = (size, bold)
    if key not in _FONTS:
        _FONTS[key] = ImageFont.truetype(_FONT_DIR / ("VeraBd.ttf" if bold else "Vera.ttf"), size)
    return _FONTS[key]


def _placeholder_photo(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), (225, 225, 225))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.3, height * 0.15, width * 0.7, height * 0.5), fill=(180, 180, 180))
    draw.rectangle((width * 0.18, height * 0.58, width * 0.82, height), fill=(180, 180, 180))
    draw.text((width / 2, height - 18), "SIN FOTO", fill=INK, font=_font(20), anchor="ms")
    return image


def front(card: CardView) -> Image.Image:
    image = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH_PX, 92), fill=GREEN)
    draw.text((32, 18), "SERVICIO UNIVERSAL DE SALUD", fill="white", font=_font(32, bold=True))
    draw.text((32, 60), "Credencial de salud · Estados Unidos Mexicanos", fill=GOLD, font=_font(22))
    pw, ph = 250, 320
    if card.photo:
        with Image.open(io.BytesIO(card.photo)) as raw:
            photo = ImageOps.fit(raw.convert("RGB"), (pw, ph), Image.Resampling.BILINEAR)
    else:
        photo = _placeholder_photo(pw, ph)
    image.paste(photo, (32, 118))
    draw.rectangle((32, 118, 32 + pw, 118 + ph), outline=GREEN, width=3)
    x, y = 312, 112
    label, value = _font(17, bold=True), _font(26, bold=True)

    def field(name: str, text: str, at_x: int, at_y: int, width: int = 660) -> None:
        draw.text((at_x, at_y), name.upper(), fill=GREEN, font=label)
        draw.text((at_x, at_y + 22), _fit(draw, text, value, width), fill=INK, font=value)

    field("Nombre", card.given_names, x, y)
    field("Apellidos", card.surnames, x, y + 62)
    field("CURP", card.curp, x, y + 124)
    field("Nacimiento", f"{card.birth_date:%d/%m/%Y} · {card.birth_state}", x, y + 186)
    field("Sexo", _SEX.get(card.sex, card.sex), x, y + 248, 200)
    field("Nacionalidad", card.nationality, x + 230, y + 248, 200)
    field("Sangre", "—" if card.blood_type == "unknown" else card.blood_type, x + 460, y + 248, 200)
    field("Donación de órganos", _DONOR.get(card.organ_donor, card.organ_donor), x, y + 310, 300)
    field("Instituciones", ", ".join(card.institutions) or "—", x + 330, y + 310, 330)
    field("Unidad asignada", card.assigned_unit or "—", 32, 470 + 8, 940)
    draw.rectangle((0, HEIGHT_PX - 24, WIDTH_PX, HEIGHT_PX), fill=GOLD)
    return image


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def back(card: CardView, signed: segno.QRCode | None = None,
         link: segno.QRCode | None = None) -> Image.Image:  # fmt: skip
    image = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), "white")
    draw = ImageDraw.Draw(image)
    signed_img = qr_image(signed or make_qr(card.signed_qr), SIGNED_MODULE_PX)
    link_img = qr_image(link or make_qr(card.link.upper(), alphanumeric=True), LINK_MODULE_PX)
    top = max(0, (HEIGHT_PX - signed_img.height) // 2 - 10)
    image.paste(signed_img, (16, top))
    right = 16 + signed_img.width + 24
    draw.text((right, 40), "Validar credencial", fill=GREEN, font=_font(28, bold=True))
    draw.text((right, 78), "Escanee el código de la izquierda", fill=INK, font=_font(18))
    lx = WIDTH_PX - link_img.width - 24
    image.paste(link_img, (lx, 130))
    draw.text((lx + link_img.width // 2, 130 + link_img.height + 8), "Unidades cercanas",
              fill=GREEN, font=_font(22), anchor="ma")  # fmt: skip
    small = _font(18)
    draw.text((right, 470), f"Credencial {card.credential_id}", fill=INK, font=small)
    draw.text((right, 498), f"Tarjeta núm. {card.sequence}", fill=INK, font=small)
    validity = f"Expedida {card.issued_at:%d/%m/%Y} · vence {card.expires_at:%d/%m/%Y}"
    draw.text((right, 526), validity, fill=INK, font=small)
    draw.text((right, 560), "Identificación oficial para servicios de salud", fill=GREEN,
              font=_font(18))  # fmt: skip
    return image


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", dpi=(DPI, DPI), compress_level=1)
    return out.getvalue()


def card_png(card: CardView, side: str) -> bytes:
    return png(front(card) if side == "front" else back(card))


def pdf(cards: Iterable[CardView]) -> bytes:
    """One PDF, two pages (front, back) per card, each page the size of the card."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(WIDTH_MM * mm, HEIGHT_MM * mm), pageCompression=0)
    canvas.setTitle("Credenciales del Servicio Universal de Salud")
    for card in cards:
        # The front (a photograph and text) goes in as JPEG, which PDF carries as it is; the
        # back (the QR codes) stays lossless, so no compression artefact touches a module,
        # and in grayscale: a third of the bytes to compress (measured: 24 -> 8 ms a card).
        jpeg = io.BytesIO()
        front(card).save(jpeg, "JPEG", quality=92, dpi=(DPI, DPI))
        jpeg.seek(0)
        for side in (ImageReader(jpeg), ImageReader(back(card).convert("L"))):
            canvas.drawImage(side, 0, 0, WIDTH_MM * mm, HEIGHT_MM * mm)
            canvas.showPage()
    canvas.save()
    return out.getvalue()
