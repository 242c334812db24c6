"""Offline verification of credentials against the raw Ed25519 verify rate, in one run.

    .venv/bin/python -m bench.credential_verify --cards 2000 --rounds 5

- raw: `cryptography`'s Ed25519PublicKey.verify over the same Sig_structure bytes the
  cards are signed over (the curve alone: the ceiling);
- ours: salud.credentials.verify.verify on the QR text: Base45, zlib, COSE_Sign1, the
  signature, the claims, the dates (everything a verifier does);
- python-cwt: cwt's COSE decode of the same cards (signature only, no Base45/zlib/claims),
  for reference.
Alternating rounds, medians. Target (issue 4): ours at least 40 % of raw.
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib
from collections.abc import Callable
from datetime import timedelta

import base45
import cbor2
from cwt import COSE, COSEKey
from tests.credentials.keys import NOW, claims, holder, keyset, make_key, sign

from bench.common import machine
from salud.credentials.claims import to_cbor
from salud.credentials.verify import verify


def run(cards: int, rounds: int) -> dict[str, float]:
    key, public = make_key()
    keys = keyset(public)
    texts = [
        sign(key, to_cbor(claims(holder=holder(curp=f"PEGJ85{i:06d}HHGRRN"), sequence=1 + i % 3)))
        for i in range(cards)
    ]
    coses = [zlib.decompress(base45.b45decode(t)) for t in texts]
    structures = []
    for c in coses:
        protected, _, payload, signature = cbor2.loads(c).value
        structures.append((signature, cbor2.dumps(["Signature1", protected, b"", payload])))
    pk = public.key()
    cose_key = COSEKey.new({1: 1, -1: 6, -2: public.public, 2: key.kid, 3: -8})
    ctx = COSE.new()
    now = NOW + timedelta(days=1)

    def raw() -> None:
        for signature, data in structures:
            pk.verify(signature, data)  # type: ignore[call-arg]

    def ours() -> None:
        for t in texts:
            verify(t, keys, now=now)

    def python_cwt() -> None:
        for c in coses:
            ctx.decode(c, cose_key)

    variants: dict[str, Callable[[], None]] = {"raw": raw, "ours": ours, "python_cwt": python_cwt}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for i in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            rates[name].append(cards / (time.perf_counter() - start))
        print(f"round {i + 1}: " + ", ".join(f"{n} {r[-1]:,.0f}/s" for n, r in rates.items()))
    result = {name: statistics.median(r) for name, r in rates.items()}
    result["ours_over_raw"] = result["ours"] / result["raw"]
    print(result, machine(), f"QR text {len(texts[0])} characters")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run(args.cards, args.rounds)


if __name__ == "__main__":
    main()
