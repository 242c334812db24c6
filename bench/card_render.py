"""Cards rendered per second for a print batch, with the QR encoding cost on its own.

    .venv/bin/python -m bench.card_render --cards 100 --rounds 3

A print file (render.pdf: front and back of each card at 300 dpi, one PDF) for a batch of
synthetic cards with photos; separately, the two QR codes of each card encoded (segno) and
the two sides rendered as PNG. Medians of rounds. Target (issue 4): at least 20 cards/s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, date, datetime

from tests.credentials.keys import card_text, claims, holder, make_key

from bench.common import machine
from salud.credentials import render
from salud.identity.synth import synthetic_face


def _cards(count: int) -> list[render.CardView]:
    key, _ = make_key()
    faces = [synthetic_face(i) for i in range(10)]
    return [
        render.CardView(
            given_names="MARÍA JOSÉ",
            surnames=f"NÚÑEZ DE LA CRUZ {i}",
            curp=f"NUCM85{i:06d}MHGX",
            birth_date=date(1985, 3, 15),
            birth_state="Hidalgo",
            sex="M",
            nationality="MEX",
            blood_type="O+",
            organ_donor="yes",
            institutions=["IMSS", "ISSSTE"],
            assigned_unit="HGIMB000011 · CENTRO DE SALUD RURAL",
            photo=faces[i % 10],
            signed_qr=card_text(key, claims(holder=holder(curp=f"NUCM85{i:06d}MHGX"))),
            link=f"HTTP://SALUD.GOB.MX/U/ABCD{i:04d}",
            credential_id="abcdefghijklmnop",
            sequence=1,
            issued_at=datetime.now(UTC),
            expires_at=datetime(2036, 12, 1, tzinfo=UTC),
        )
        for i in range(count)
    ]


def run(count: int, rounds: int) -> dict[str, float]:
    cards = _cards(count)
    render.pdf(cards[:2])  # warm-up: fonts, reportlab
    batch, qr, png = [], [], []
    size = 0
    for i in range(rounds):
        start = time.perf_counter()
        document = render.pdf(cards)
        batch.append(count / (time.perf_counter() - start))
        size = len(document)
        start = time.perf_counter()
        for c in cards:
            render.make_qr(c.signed_qr)
            render.make_qr(c.link, alphanumeric=True)
        qr.append((time.perf_counter() - start) / count * 1000)
        start = time.perf_counter()
        for c in cards:
            render.card_png(c, "front")
            render.card_png(c, "back")
        png.append(count / (time.perf_counter() - start))
        print(f"round {i + 1}: print file {batch[-1]:.1f} cards/s, QR encoding {qr[-1]:.2f} ms"
              f"/card, PNG front+back {png[-1]:.1f} cards/s")  # fmt: skip
    result = {
        "print_file_cards_per_s": statistics.median(batch),
        "qr_ms_per_card": statistics.median(qr),
        "png_cards_per_s": statistics.median(png),
        "pdf_bytes_per_card": size / count,
    }
    print(result, machine())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.cards, args.rounds)


if __name__ == "__main__":
    main()
