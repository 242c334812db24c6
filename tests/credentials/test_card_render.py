"""The printed card's layout: an official ID shows the whole name (shrunk, then on two lines,
cut only beyond that), and the signed QR fits the back whatever its size, down to modules of
4 px, or is refused."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace
from typing import Any

import pytest
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

from salud.credentials import render
from salud.credentials.service import _face_thumbnail
from salud.identity.synth import synthetic_face
from tests.credentials.keys import NOW, card_text, claims, holder, make_key

LONG_GIVEN = "MARÍA GUADALUPE DEL SAGRADO CORAZÓN DE JESÚS"
LONG_SURNAMES = "FERNÁNDEZ DE CÓRDOBA Y SAAVEDRA MONTENEGRO-ÁLVAREZ"
LONGER_GIVEN = "JOSÉ MARÍA DE LA SANTÍSIMA TRINIDAD FRANCISCO XAVIER IGNACIO ANTONIO DE PADUA"
INSTITUTIONS = ["IMSS", "ISSSTE", "PEMEX", "SEDENA", "SEMAR", "IMSS-BIENESTAR"]
UNIT = "HGIMB000011 · HOSPITAL GENERAL DE ZONA CON MEDICINA FAMILIAR NÚMERO 1 DOCTOR IGNACIO"
_KEY = make_key()


def view(given: str = "JUANA", surnames: str = "PÉREZ DE LA CRUZ", **kw: Any) -> render.CardView:
    h = holder(given_names=given, surnames=surnames)
    face = kw.pop("face", None)
    text = card_text(_KEY[0], claims(holder=h, face=face, face_format="webp" if face else None))
    base: dict[str, Any] = {
        "given_names": given, "surnames": surnames, "curp": h.curp,
        "birth_date": h.birth_date, "birth_state": "Veracruz De Ignacio De La Llave",
        "sex": h.sex, "nationality": "MEX", "blood_type": "O+", "organ_donor": "not_stated",
        "institutions": INSTITUTIONS, "assigned_unit": UNIT, "photo": synthetic_face(3),
        "signed_qr": text, "link": "HTTPS://SALUD.GOB.MX/U/ABCDEFGHIJKLM",
        "credential_id": "abcdefghijklmnop", "sequence": 1, "issued_at": NOW,
        "expires_at": NOW,
    }  # fmt: skip
    base.update(kw)
    return render.CardView(**base)


@dataclass(frozen=True)
class Drawn:
    text: str
    box: tuple[float, float, float, float]


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Drawn]:
    """Every text the renderer draws and every image it pastes, with its box on the card."""
    found: list[Drawn] = []
    original_text, original_paste = ImageDraw.ImageDraw.text, Image.Image.paste

    def text(self: ImageDraw.ImageDraw, xy: Any, text: Any, *args: Any, **kw: Any) -> None:
        font = kw.get("font")
        assert isinstance(font, ImageFont.FreeTypeFont)
        left, top, right, bottom = font.getbbox(text, anchor=kw.get("anchor") or "la")
        found.append(Drawn(text, (xy[0] + left, xy[1] + top, xy[0] + right, xy[1] + bottom)))
        original_text(self, xy, text, *args, **kw)

    def paste(self: Image.Image, im: Any, box: Any = None, *args: Any, **kw: Any) -> None:
        if isinstance(im, Image.Image) and isinstance(box, tuple) and len(box) == 2:
            found.append(Drawn("<image>", (box[0], box[1], box[0] + im.width, box[1] + im.height)))
        original_paste(self, im, box, *args, **kw)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
    monkeypatch.setattr(Image.Image, "paste", paste)
    return found


def _inside_the_card(box: tuple[float, float, float, float]) -> bool:
    return box[0] >= 0 and box[1] >= 0 and box[2] <= render.WIDTH_PX and box[3] <= render.HEIGHT_PX


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize(
    ("given", "surnames"), [(LONG_GIVEN, LONG_SURNAMES), (LONGER_GIVEN, LONG_SURNAMES)]
)
def test_the_front_prints_long_names_whole(drawn: list[Drawn], given: str, surnames: str) -> None:
    """An official ID shows the whole name: it shrinks, then takes a second line; nothing
    drawn ends in "…". So do the institutions and the assigned unit."""
    render.front(view(given, surnames))
    texts = [d.text for d in drawn]
    assert not [t for t in texts if "…" in t]
    joined = " ".join(texts)
    for whole in (given, surnames, ", ".join(INSTITUTIONS), UNIT):
        assert whole in joined, whole
    assert all(_inside_the_card(d.box) for d in drawn)


def test_the_front_layout_is_what_is_drawn_and_nothing_overlaps(drawn: list[Drawn]) -> None:
    card = view(LONGER_GIVEN, LONG_SURNAMES + " " + LONG_SURNAMES)
    layout = render.front_layout(card)
    render.front(card)
    assert [d.text for d in drawn if d.text != "<image>"] == [p.text for p in layout]

    def value(field: str) -> list[render.Placed]:
        return [p for p in layout if p.field == field]

    assert " ".join(p.text for p in value("Nombre")) == LONGER_GIVEN
    assert " ".join(p.text for p in value("Apellidos")) == LONG_SURNAMES + " " + LONG_SURNAMES
    assert len(value("Nombre")) == 2
    assert {p.size for p in value("Nombre")} == {render.VALUE_FLOOR_PX}
    assert value("CURP")[0].size == render.VALUE_PX  # what fits keeps its size
    photo = (32, 118, 32 + 250, 118 + 320)
    boxes = [p.box() for p in layout]
    for i, box in enumerate(boxes):
        assert _inside_the_card(box)
        assert box[3] <= render.HEIGHT_PX - render.GOLD_BAR_PX, layout[i]
        assert not _overlap(box, photo), layout[i]
        for j in range(i):
            assert not _overlap(box, boxes[j]), (layout[i], layout[j])


def test_a_value_shrinks_then_wraps_and_is_cut_only_beyond_two_lines() -> None:
    font = render._font(render.VALUE_FLOOR_PX, True)
    fits_smaller = render.fit_text(LONG_GIVEN, 660)
    assert fits_smaller.lines == (LONG_GIVEN,)
    assert render.VALUE_FLOOR_PX <= fits_smaller.size < render.VALUE_PX
    wrapped = render.fit_text(LONGER_GIVEN, 660)
    assert (" ".join(wrapped.lines), wrapped.size, wrapped.truncated) == (
        LONGER_GIVEN, render.VALUE_FLOOR_PX, False
    )  # fmt: skip
    one_word = "A" * 60  # wider than a line: split, not cut
    split = render.fit_text(one_word, 660)
    assert "".join(split.lines) == one_word
    assert not split.truncated
    endless = render.fit_text("B" * 300, 660)
    assert endless.truncated
    assert len(endless.lines) == 2
    assert endless.lines[-1].endswith("…")
    for fitted in (wrapped, split, endless):
        assert all(font.getlength(line) <= 660 for line in fitted.lines)


def _face() -> bytes:
    return _face_thumbnail(synthetic_face(3))


def _noisy_face() -> bytes:
    """A photograph's grain (seeded noise), which compresses worse than a drawn face."""
    base = Image.open(io.BytesIO(synthetic_face(5))).convert("L")
    grain = Image.frombytes("L", base.size, random.Random(7).randbytes(base.width * base.height))
    image = Image.blend(base, grain, 0.3).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return _face_thumbnail(out.getvalue())


def _random_name(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ABCDEFGHIJKLMNÑOPQRSTUVWXYZÁÉÍÓÚÜ") for _ in range(n))


@pytest.mark.parametrize(
    ("given", "surnames", "face"),
    [
        (LONG_GIVEN, LONG_SURNAMES, _face),  # version 19
        (LONGER_GIVEN, LONG_SURNAMES, _noisy_face),
        # The registry's longest names (100 and 100 + 100 letters): versions 19 and 23.
        (_random_name(1, 100), _random_name(2, 100) + " " + _random_name(3, 100), _face),
        (_random_name(4, 100), _random_name(5, 100) + " " + _random_name(6, 100), None),
    ],
)
def test_the_signed_qr_fits_the_back_and_scans_with_the_face_and_long_names(
    drawn: list[Drawn], given: str, surnames: str, face: Any
) -> None:
    """With the face in the QR, long names made a version 19+ code whose 6 px modules pushed
    the text off the card and cropped the code: the modules shrink (down to 4 px) instead."""
    card = view(given, surnames, face=face() if face else None)
    back = render.back(card)
    assert all(_inside_the_card(d.box) for d in drawn), [
        d for d in drawn if not _inside_the_card(d.box)
    ]
    pasted = [d.box for d in drawn if d.text == "<image>"]
    for i, box in enumerate(d.box for d in drawn):
        for j in range(i):
            assert not _overlap(box, drawn[j].box), (drawn[i], drawn[j])
    assert len(pasted) == 2
    found = [r.text for r in zxingcpp.read_barcodes(back)]
    assert card.signed_qr in found
    assert card.link in found
    layout = render.back_layout(card, render.make_qr(card.signed_qr), render.make_qr(card.link))
    assert render.SIGNED_MODULE_MIN_PX <= layout.signed_module_px <= render.SIGNED_MODULE_PX
    assert render.signed_qr_fits(card.signed_qr)


def test_a_short_card_keeps_its_six_pixel_modules() -> None:
    card = view()
    layout = render.back_layout(card, render.make_qr(card.signed_qr), render.make_qr(card.link))
    assert layout.signed_module_px == render.SIGNED_MODULE_PX


def test_a_signed_qr_too_big_for_the_back_is_refused_with_the_reason() -> None:
    text = "A1" * 900  # 1,800 alphanumeric characters: version 30 at level M
    assert render.qr_version(text) > 28
    card = replace(view(), signed_qr=text)
    assert not render.signed_qr_fits(text)
    with pytest.raises(render.QrTooLarge) as caught:
        render.back(card)
    assert caught.value.status == 409
    assert "no cabe en el reverso" in caught.value.detail
