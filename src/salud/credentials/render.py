"""Card rendering: ID-1 (ISO/IEC 7810, 85.60 × 53.98 mm) front and back, as PNG and PDF.

Front: photo and identity. Back: the signed QR (validation) and the short-link QR (nearest
units). Raster at 300 dpi, the resolution card printers print at; each QR module is a whole
number of pixels so that it prints sharp. The PDF places the same rasters on pages of the
card's size (two pages per card), which is what a card printer's driver takes; a print batch
is one PDF with every card of the batch.

QR choices (for cheap phone cameras and worn plastic): error correction M (15 %), a quiet
zone of 4 modules, modules of 0.51 mm (6 px) for the signed QR when it fits beside the back's
text (up to version 16), else 0.42 mm (5 px, up to version 21) or 0.34 mm (4 px, up to
version 28), a bigger code being refused (`QrTooLarge`); 0.68 mm (8 px) for the link; the
alphanumeric mode, which Base45 was designed for. The mask is fixed (pattern 2): segno's
search over the eight masks costs about 30 ms per code and the fixed one scans as well in the
round-trip tests (zxing-cpp on the rendered image).

Text is never cut where it fits: a value (a name, the institutions, the unit) shrinks from
26 px to 18 px, then wraps onto a second line at 18 px, the rows below moving down; only
what two lines at 18 px cannot hold ends in "…" (`fit_text`). `front_layout` and
`back_layout` place everything without drawing, so tests can check the layout itself."""

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

from salud.errors import Conflict

DPI = 300
WIDTH_MM, HEIGHT_MM = 85.60, 53.98
WIDTH_PX, HEIGHT_PX = round(WIDTH_MM / 25.4 * DPI), round(HEIGHT_MM / 25.4 * DPI)  # 1011 × 638
SIGNED_MODULE_PX, SIGNED_MODULE_MIN_PX, LINK_MODULE_PX = 6, 4, 8
QUIET_ZONE = 4  # modules
QR_MASK = 2
GREEN, GOLD, INK, WHITE = (35, 91, 78), (188, 149, 92), (30, 30, 30), (255, 255, 255)
# The back: the signed QR from the left edge, a column of text beside it, the link's QR at
# the right. The column is as wide as its widest text (393 px at 18 px), so the signed QR,
# quiet zone included, has SIGNED_ROOM_PX.
QR_LEFT, QR_GAP, EDGE, BACK_TEXT_PX = 16, 24, 16, 400
SIGNED_ROOM_PX = WIDTH_PX - QR_LEFT - QR_GAP - BACK_TEXT_PX - EDGE  # 555
# The front's values: 26 px, shrunk down to 18 px, then two lines at 18 px.
VALUE_PX, VALUE_FLOOR_PX, VALUE_LINES, LABEL_PX = 26, 18, 2, 17
LABEL_TO_VALUE, FIELD_PITCH, UNIT_Y, GOLD_BAR_PX = 22, 62, 478, 24
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


class QrTooLarge(Conflict):
    """The signed QR does not fit the card's back even at its smallest modules."""

    def __init__(self, modules: int) -> None:
        version = (modules - 2 * QUIET_ZONE - 17) // 4
        super().__init__(
            f"el código QR firmado (versión {version}, {modules} módulos con el margen) no "
            f"cabe en el reverso de la tarjeta ni con módulos de {SIGNED_MODULE_MIN_PX} px "
            f"({SIGNED_MODULE_MIN_PX * 25.4 / DPI:.2f} mm), el mínimo legible: la tarjeta no se "
            "imprime"
        )


@dataclass(frozen=True, slots=True)
class Placed:
    """One line of text on a card: where (Pillow's anchor), its size and colour, and the
    field whose value it shows ("" for labels and fixed texts)."""

    text: str
    x: int
    y: int
    size: int
    bold: bool = False
    fill: tuple[int, int, int] = INK
    field: str = ""
    anchor: str = "la"

    def box(self) -> tuple[float, float, float, float]:
        left, top, right, bottom = _font(self.size, self.bold).getbbox(
            self.text, anchor=self.anchor
        )
        return self.x + left, self.y + top, self.x + right, self.y + bottom


@dataclass(frozen=True, slots=True)
class Fitted:
    lines: tuple[str, ...]
    size: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class BackLayout:
    """The back's parts: each QR's top-left corner and side in px (quiet zone included), the
    signed QR's pixels per module, and the texts."""

    signed_at: tuple[int, int]
    signed_side: int
    signed_module_px: int
    link_at: tuple[int, int]
    link_side: int
    texts: tuple[Placed, ...]


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


def signed_module_px(modules: int) -> int:
    """Pixels per module of the signed QR whose side is `modules` (quiet zone included): 6
    when it fits beside the back's text, else 5 or 4, the smallest that phone cameras read
    reliably at a hand's distance; QrTooLarge below that."""
    px = min(SIGNED_MODULE_PX, SIGNED_ROOM_PX // modules, (HEIGHT_PX - 2 * EDGE) // modules)
    if px < SIGNED_MODULE_MIN_PX:
        raise QrTooLarge(modules)
    return px


def signed_qr_fits(text: str) -> bool:
    """Whether the signed QR of this text can be printed on the card's back."""
    try:
        signed_module_px(17 + 4 * qr_version(text) + 2 * QUIET_ZONE)
    except (QrTooLarge, ValueError):
        return False
    return True


def qr_image(code: segno.QRCode, module_px: int) -> Image.Image:
    """A 1-bit image of the code with its 4-module quiet zone, module_px per module."""
    size = int(code.symbol_size(scale=1, border=QUIET_ZONE)[0])
    image = Image.new("1", (size, size), 1)
    pixels = image.load()
    assert pixels is not None
    for y, row in enumerate(code.matrix):
        for x, dark in enumerate(row):
            if dark:
                pixels[x + QUIET_ZONE, y + QUIET_ZONE] = 0
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


def _line_px(size: int, bold: bool = True) -> int:
    ascent, descent = _font(size, bold).getmetrics()
    return ascent + descent


def _longest(text: str, font: ImageFont.FreeTypeFont, width: int, suffix: str = "") -> int:
    """How many leading characters of `text` (then `suffix`) fit in `width` px."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid] + suffix) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _first_line(text: str, font: ImageFont.FreeTypeFont, width: int) -> tuple[str, str]:
    """The first line of `text` in `width` px, broken at the last space that allows it (a word
    wider than the line is split), and the rest."""
    fit = max(1, _longest(text, font, width))
    space = text.rfind(" ", 0, fit + 1)
    if space > 0:
        return text[:space].rstrip(), text[space + 1 :].lstrip()
    return text[:fit], text[fit:].lstrip()


def fit_text(
    text: str, width: int, *, size: int = VALUE_PX, floor: int = VALUE_FLOOR_PX,
    max_lines: int = VALUE_LINES, bold: bool = True,
) -> Fitted:  # fmt: skip
    """A value in `width` px: one line at `size`, shrunk a pixel at a time down to `floor`;
    then wrapped at spaces onto up to `max_lines` lines at `floor`. Only what those lines
    cannot hold is cut, the last line ending in "…" (`truncated`)."""
    for candidate in range(size, floor - 1, -1):
        if _font(candidate, bold).getlength(text) <= width:
            return Fitted((text,), candidate, False)
    font = _font(floor, bold)
    lines: list[str] = []
    rest = text.strip()
    while len(lines) < max_lines - 1 and font.getlength(rest) > width:
        line, rest = _first_line(rest, font, width)
        lines.append(line)
    if font.getlength(rest) <= width:
        return Fitted((*lines, rest), floor, False)
    cut = rest[: _longest(rest, font, width, "…")].rstrip() + "…"
    return Fitted((*lines, cut), floor, True)


def _field(placed: list[Placed], name: str, text: str, x: int, y: int, width: int) -> int:
    """Place a field's label and value at (x, y); how much taller than one line at VALUE_PX
    the value came out (the rows below move down by that)."""
    placed.append(Placed(name.upper(), x, y, LABEL_PX, bold=True, fill=GREEN))
    fitted = fit_text(text, width)
    pitch = _line_px(fitted.size)
    for i, line in enumerate(fitted.lines):
        at = y + LABEL_TO_VALUE + i * pitch
        placed.append(Placed(line, x, at, fitted.size, bold=True, field=name))
    return max(0, len(fitted.lines) * pitch - _line_px(VALUE_PX))


def front_layout(card: CardView) -> list[Placed]:
    """Every text of the front, placed (what `front` draws)."""
    placed = [
        Placed("SERVICIO UNIVERSAL DE SALUD", 32, 18, 32, bold=True, fill=WHITE),
        Placed("Credencial de salud · Estados Unidos Mexicanos", 32, 60, 22, fill=GOLD),
    ]
    x = 312
    rows: list[list[tuple[str, str, int, int]]] = [
        [("Nombre", card.given_names, x, 660)],
        [("Apellidos", card.surnames, x, 660)],
        [("CURP", card.curp, x, 660)],
        [("Nacimiento", f"{card.birth_date:%d/%m/%Y} · {card.birth_state}", x, 660)],
        [("Sexo", _SEX.get(card.sex, card.sex), x, 200),
         ("Nacionalidad", card.nationality, x + 230, 200),
         ("Sangre", "—" if card.blood_type == "unknown" else card.blood_type, x + 460, 200)],
        [("Donación de órganos", _DONOR.get(card.organ_donor, card.organ_donor), x, 300),
         ("Instituciones", ", ".join(card.institutions) or "—", x + 330, 330)],
    ]  # fmt: skip
    y, grown = 112, 0
    for row in rows:
        extra = max(_field(placed, name, text, fx, y, width) for name, text, fx, width in row)
        y, grown = y + FIELD_PITCH + extra, grown + extra
    _field(placed, "Unidad asignada", card.assigned_unit or "—", 32, UNIT_Y + grown, 940)
    return placed


def front(card: CardView) -> Image.Image:
    image = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH_PX, 92), fill=GREEN)
    pw, ph = 250, 320
    if card.photo:
        with Image.open(io.BytesIO(card.photo)) as raw:
            photo = ImageOps.fit(raw.convert("RGB"), (pw, ph), Image.Resampling.BILINEAR)
    else:
        photo = _placeholder_photo(pw, ph)
    image.paste(photo, (32, 118))
    draw.rectangle((32, 118, 32 + pw, 118 + ph), outline=GREEN, width=3)
    for p in front_layout(card):
        draw.text((p.x, p.y), p.text, fill=p.fill, font=_font(p.size, p.bold), anchor=p.anchor)
    draw.rectangle((0, HEIGHT_PX - GOLD_BAR_PX, WIDTH_PX, HEIGHT_PX), fill=GOLD)
    return image


def back_layout(card: CardView, signed: segno.QRCode, link: segno.QRCode) -> BackLayout:
    """Where the back's QR codes and texts go (what `back` draws); QrTooLarge if the signed
    QR does not fit."""
    modules = int(signed.symbol_size(scale=1, border=QUIET_ZONE)[0])
    px = signed_module_px(modules)
    side = modules * px
    top = max(0, (HEIGHT_PX - side) // 2 - 10)
    right = QR_LEFT + side + QR_GAP
    link_side = int(link.symbol_size(scale=1, border=QUIET_ZONE)[0]) * LINK_MODULE_PX
    lx = WIDTH_PX - link_side - 24
    validity = f"Expedida {card.issued_at:%d/%m/%Y} · vence {card.expires_at:%d/%m/%Y}"
    texts = (
        Placed("Validar credencial", right, 40, 28, bold=True, fill=GREEN),
        Placed("Escanee el código de la izquierda", right, 78, 18),
        Placed("Unidades cercanas", lx + link_side // 2, 130 + link_side + 8, 22, fill=GREEN,
               anchor="ma"),
        Placed(f"Credencial {card.credential_id}", right, 470, 18),
        Placed(f"Tarjeta núm. {card.sequence}", right, 498, 18),
        Placed(validity, right, 526, 18),
        Placed("Identificación oficial para servicios de salud", right, 560, 18, fill=GREEN),
    )  # fmt: skip
    return BackLayout((QR_LEFT, top), side, px, (lx, 130), link_side, texts)


def back(card: CardView, signed: segno.QRCode | None = None,
         link: segno.QRCode | None = None) -> Image.Image:  # fmt: skip
    signed = signed or make_qr(card.signed_qr)
    link = link or make_qr(card.link.upper(), alphanumeric=True)
    layout = back_layout(card, signed, link)
    image = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), "white")
    draw = ImageDraw.Draw(image)
    image.paste(qr_image(signed, layout.signed_module_px), layout.signed_at)
    image.paste(qr_image(link, LINK_MODULE_PX), layout.link_at)
    for p in layout.texts:
        draw.text((p.x, p.y), p.text, fill=p.fill, font=_font(p.size, p.bold), anchor=p.anchor)
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
