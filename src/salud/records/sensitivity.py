"""Sensitive categories of clinical data the person may restrict to the institution that
recorded them (LGPDPPSO art. 3 fr. X: health data is sensitive; NOM-024-SSA3-2012).

A resource is classified when it is written, from its CIE-10 codings and its security labels
(HL7 v3 ActCode confidentiality / sensitivity codes): pure functions, no database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from salud.records.codes import CIE10_SYSTEMS

MENTAL, SEXUAL, HIV = "mental_health", "sexual_reproductive", "hiv"
CATEGORIES = (MENTAL, SEXUAL, HIV)
LABELS = {
    MENTAL: "salud mental",
    SEXUAL: "salud sexual y reproductiva",
    HIV: "VIH",
}
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_SECURITY = {"PSY": MENTAL, "PSYTHPN": MENTAL, "BH": MENTAL, "HIV": HIV, "SEX": SEXUAL,
             "SDV": SEXUAL}  # fmt: skip


def _cie10_category(code: str) -> str | None:
    key = code.replace(".", "").strip().upper()
    if len(key) < 3 or not key[0].isalpha() or not key[1:3].isdigit():
        return None
    letter, number = key[0], int(key[1:3])
    if letter == "F" or (letter == "X" and 60 <= number <= 84):  # disorders; self-harm
        return MENTAL
    if (letter == "B" and 20 <= number <= 24) or (letter == "Z" and number == 21):
        return HIV
    if letter == "O" or (letter == "Z" and 30 <= number <= 39):  # pregnancy, contraception
        return SEXUAL
    if letter == "A" and 50 <= number <= 64:  # sexually transmitted infections
        return SEXUAL
    if letter == "N" and 96 <= number <= 98:  # infertility, its treatment
        return SEXUAL
    return None


def _codings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and "code" in node:
            yield node
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _codings(item)


def categories(resource: dict[str, Any]) -> frozenset[str]:
    """The sensitive categories a resource falls in (empty for most)."""
    found: set[str] = set()
    for coding in _codings({k: v for k, v in resource.items() if k != "meta"}):
        if coding["system"] in CIE10_SYSTEMS:
            category = _cie10_category(str(coding["code"]))
            if category:
                found.add(category)
    for label in (resource.get("meta") or {}).get("security") or []:
        if isinstance(label, dict) and label.get("system") == _ACT_CODE:
            category = _SECURITY.get(str(label.get("code")))
            if category:
                found.add(category)
    return frozenset(found)
