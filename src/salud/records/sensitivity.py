"""Sensitive categories of clinical data the person may restrict to the institution that
recorded them (LGPDPPSO art. 3 fr. X: health data is sensitive; NOM-024-SSA3-2012).

A resource is classified when it is written, from its codings and its security labels (HL7
v3 ActCode confidentiality / sensitivity codes): pure functions, no database. The codings
read are CIE-10 (by chapter ranges), and, for data not coded as a diagnosis (a viral load, a
prescription), short tables of LOINC tests, SNOMED CT concepts and ATC drug groups that
reveal a category by themselves. Those tables are the common cases, not whole value sets: an
institution that codes otherwise labels the resource (`meta.security`)."""

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


_LOINC = "http://loinc.org"
_SNOMED = "http://snomed.info/sct"
_ATC = "http://www.whocc.no/atc"
# LOINC tests whose mere presence says the category (HIV antibody, antigen and viral load;
# depression and anxiety scales; pregnancy tests and sexually transmitted infections).
_LOINC_CODES = {
    **dict.fromkeys(("7917-8", "5221-7", "20447-9", "10351-5", "25835-0", "56888-1",
                     "75622-1", "31201-7", "68961-2"), HIV),
    **dict.fromkeys(("44249-1", "44261-6", "69737-5", "70274-6"), MENTAL),
    **dict.fromkeys(("2106-3", "2118-8", "21613-5", "24111-7", "20507-0"), SEXUAL),
}  # fmt: skip
# SNOMED CT concepts: HIV infection, HIV positive, AIDS; depressive, schizophrenic, bipolar
# and anxiety disorders; pregnancy, sexually transmitted disease.
_SNOMED_CODES = {
    **dict.fromkeys(("86406008", "165816005", "62479008"), HIV),
    **dict.fromkeys(("35489007", "58214004", "13746004", "197480006"), MENTAL),
    **dict.fromkeys(("77386006", "8098009"), SEXUAL),
}  # fmt: skip
# ATC groups: antiretrovirals used for HIV only (combinations, protease inhibitors,
# non-nucleoside reverse-transcriptase inhibitors), antipsychotics and antidepressants,
# hormonal contraceptives.
_ATC_PREFIXES = (("J05AR", HIV), ("J05AE", HIV), ("J05AG", HIV), ("N05A", MENTAL),
                 ("N06A", MENTAL), ("G03A", SEXUAL))  # fmt: skip


def _coded_categories(system: str, code: str) -> frozenset[str]:
    if system in CIE10_SYSTEMS:
        key = code.replace(".", "").strip().upper()
        specific = next((c for prefix, c in _CIE10_SPECIFIC if key.startswith(prefix)), None)
        general = _cie10_category(code)
        return frozenset({c for c in (general,) if c} | (specific or frozenset()))
    single = _coded_category(system, code)
    return frozenset({single}) if single else frozenset()


# CIE-10 codes outside the chapters below that still say it (the DGIS catalog's): HIV lab
# evidence, screening, exposure and counselling, and HIV in pregnancy; sexual abuse and
# screening or exposure for sexually transmitted infections, high-risk sexual behaviour;
# a personal history of self-harm. Checked by prefix of the code without its dot.
_CIE10_SPECIFIC: tuple[tuple[str, frozenset[str]], ...] = (
    ("R75", frozenset({HIV})), ("Z114", frozenset({HIV})), ("Z206", frozenset({HIV})),
    ("Z717", frozenset({HIV})), ("O987", frozenset({HIV, SEXUAL})),
    ("T742", frozenset({SEXUAL})), ("Y05", frozenset({SEXUAL})), ("Z113", frozenset({SEXUAL})),
    ("Z202", frozenset({SEXUAL})), ("Z725", frozenset({SEXUAL})),
    ("Z915", frozenset({MENTAL})),
)  # fmt: skip


def _coded_category(system: str, code: str) -> str | None:
    if system == _LOINC:
        return _LOINC_CODES.get(code.strip())
    if system == _SNOMED:
        return _SNOMED_CODES.get(code.strip())
    if system == _ATC:
        key = code.strip().upper()
        return next((c for prefix, c in _ATC_PREFIXES if key.startswith(prefix)), None)
    return None


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
        found |= _coded_categories(coding["system"], str(coding["code"]))
    for label in (resource.get("meta") or {}).get("security") or []:
        if isinstance(label, dict) and label.get("system") == _ACT_CODE:
            category = _SECURITY.get(str(label.get("code")))
            if category:
                found.add(category)
    return frozenset(found)


def stored_form(resource: dict[str, Any]) -> str:
    """The categories as the store keeps them (`fhir_resources.sensitivity`): sorted, comma
    separated, empty for none."""
    return ",".join(sorted(categories(resource)))
