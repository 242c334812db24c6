"""Synthetic Mexican people in the registry's NDJSON import format. Never real persons.

Names come from Faker's es_MX lists, drawn with our own seeded `random.Random` (Faker's
`curp()` is wrong and its seeding unreliable); places from the INEGI 2020 census files in the
shared data folder, weighted by population; CURPs from `curp.generate` with the person's own
data. The same seed gives byte-identical output: nothing depends on the clock (ages are
counted back from `REFERENCE_DATE`), on hash order or on the environment.

Generation is on the benchmark path (a million persons), so every draw is one
`random()` and a bisect over precomputed cumulative weights.
"""

from __future__ import annotations

import csv
import random
from bisect import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from faker.providers.person.es_MX import Provider as PersonProvider

from salud.identity import curp
from salud.kit.text import search_key

__all__ = ["REFERENCE_DATE", "generate_persons", "write_ndjson"]

# Ages are counted back from this date, not from the clock, so output never changes.
REFERENCE_DATE = date(2026, 1, 1)

# Population by five-year age group (share %, and % men in the group), approximately as in
# INEGI, Censo de Población y Vivienda 2020 (tabulados de población por edad y sexo):
# 126.0 million people, 48.8 % men, about 25 % under 15; women outnumber men with age.
_AGE_GROUPS: tuple[tuple[float, float], ...] = (
    (8.3, 50.8),  # 0-4
    (8.7, 50.8),  # 5-9
    (8.8, 50.6),  # 10-14
    (8.6, 50.2),  # 15-19
    (8.3, 49.4),  # 20-24
    (7.9, 48.5),  # 25-29
    (7.5, 48.1),  # 30-34
    (7.1, 47.9),  # 35-39
    (6.8, 47.8),  # 40-44
    (6.3, 47.5),  # 45-49
    (5.6, 47.4),  # 50-54
    (4.6, 47.4),  # 55-59
    (3.8, 47.2),  # 60-64
    (2.9, 46.9),  # 65-69
    (2.1, 46.5),  # 70-74
    (1.4, 45.8),  # 75-79
    (0.9, 44.6),  # 80-84
    (0.8, 42.5),  # 85+ (ages drawn 85-104, fewer at higher ages)
)
_NON_BINARY_SHARE = 0.0005

# ABO/Rh frequencies reported for Mexican blood donors (O+ about 59 %), plus ~1 % unknown.
_BLOOD_TYPES: tuple[tuple[str, float], ...] = (
    ("O+", 59.0),
    ("A+", 26.0),
    ("B+", 8.0),
    ("AB+", 1.5),
    ("O-", 2.7),
    ("A-", 1.3),
    ("B-", 0.5),
    ("AB-", 0.1),
    ("unknown", 1.0),
)

# DGIS AFILIACION codes.
IMSS, ISSSTE, PEMEX, SEDENA, SEMAR, IMSS_BIENESTAR = 2, 3, 4, 5, 6, 10
# Derechohabiencia, approximately after INEGI Censo 2020 (IMSS is the largest institution,
# then ISSSTE; Pemex, Defensa and Marina are small). People without social security are
# attended by IMSS-Bienestar (code 10). About 3 % hold two affiliations. Shares of people:
# IMSS ~45 %, ISSSTE ~8 %, PEMEX ~0.6 %, SEDENA ~0.6 %, SEMAR ~0.3 %, the rest IMSS-Bienestar.
_AFFILIATION_SETS: tuple[tuple[tuple[int, ...], float], ...] = (
    ((IMSS,), 42.1),
    ((ISSSTE,), 5.1),
    ((PEMEX,), 0.6),
    ((SEDENA,), 0.5),
    ((SEMAR,), 0.2),
    ((IMSS, ISSSTE), 2.8),
    ((ISSSTE, SEDENA), 0.1),
    ((IMSS, SEMAR), 0.1),
    ((IMSS_BIENESTAR,), 48.5),
)
_IMSS_REGIMES: tuple[tuple[str, float], ...] = (
    ("ordinario", 90.0),
    ("voluntario", 6.0),
    ("facultativo", 4.0),  # students (seguro facultativo)
)
_SOCIAL_SECURITY_SINCE = date(1960, 1, 1)
_IMSS_BIENESTAR_SINCE = date(2023, 1, 1)

_BIRTH_STATE_IS_RESIDENCE = 0.80
_BORN_ABROAD = 0.01
_BORN_ABROAD_MEXICAN = 0.80
_FOREIGN_NATIONALITIES: tuple[tuple[str, float], ...] = (
    ("USA", 50.0),
    ("GTM", 12.0),
    ("HND", 8.0),
    ("VEN", 6.0),
    ("SLV", 5.0),
    ("COL", 5.0),
    ("CUB", 5.0),
    ("ESP", 4.0),
    ("ARG", 3.0),
    ("CAN", 2.0),
)
_TWO_GIVEN_NAMES = 0.25
_NO_SECOND_SURNAME = 0.02
# Organ donation is declared by adults: ~10 % yes and ~5 % no of the whole population.
_DONOR_YES_ADULT = 0.145
_DONOR_NO_ADULT = 0.072
_PHONE_ADULT, _PHONE_CHILD = 0.85, 0.05
_EMAIL_ADULT = 0.55
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")  # reserved: no real mailbox

_STREET_PREFIXES: tuple[tuple[str, float], ...] = (
    ("Calle", 60.0),
    ("Avenida", 14.0),
    ("Privada", 5.0),
    ("Cerrada", 4.0),
    ("Callejón", 3.0),
    ("Prolongación", 3.0),
    ("Andador", 2.0),
    ("Boulevard", 2.0),
    ("Calzada", 2.0),
    ("Circuito", 2.0),
    ("Retorno", 1.5),
    ("Camino", 1.5),
)
_STREET_NAMES = (
    "Hidalgo",
    "Morelos",
    "Juárez",
    "Benito Juárez",
    "Miguel Hidalgo",
    "Allende",
    "Aldama",
    "Matamoros",
    "Guerrero",
    "Vicente Guerrero",
    "Emiliano Zapata",
    "Francisco I. Madero",
    "Independencia",
    "Reforma",
    "Revolución",
    "Constitución",
    "Insurgentes",
    "5 de Mayo",
    "16 de Septiembre",
    "20 de Noviembre",
    "Niños Héroes",
    "Lázaro Cárdenas",
    "Venustiano Carranza",
    "Guadalupe Victoria",
    "Galeana",
    "Ignacio Zaragoza",
    "Josefa Ortiz de Domínguez",
    "Leona Vicario",
    "Nicolás Bravo",
    "Álvaro Obregón",
    "Del Trabajo",
    "Las Flores",
    "Los Pinos",
    "Del Río",
    "La Paz",
    "Juan Escutia",
    "Cuauhtémoc",
    "Moctezuma",
    "Ocampo",
    "Abasolo",
)


class _Draw:
    """Values and their cumulative weights: `pick(u)` with u uniform in [0, 1)."""

    __slots__ = ("cum", "last", "total", "values")

    def __init__(self, pairs: Iterable[tuple[Any, float]]) -> None:
        items = [(v, w) for v, w in pairs if w > 0]
        if not items:
            raise ValueError("no hay valores con peso positivo")
        self.values: list[Any] = [v for v, _ in items]
        self.cum: list[float] = list(accumulate(w for _, w in items))
        self.total: float = self.cum[-1]
        self.last = len(items) - 1  # bisect's upper bound: rounding can never overflow

    def index(self, u: float) -> int:
        return bisect(self.cum, u * self.total, 0, self.last)

    def pick(self, u: float) -> Any:
        return self.values[bisect(self.cum, u * self.total, 0, self.last)]


@dataclass(frozen=True, slots=True)
class _Municipality:
    state_inegi: str  # "13"
    state_curp: str  # "HG"
    key: str  # "048"
    localities: _Draw  # locality key or None (population outside the listed localities)


@dataclass(frozen=True, slots=True)
class _Catalogs:
    municipalities: _Draw  # of _Municipality, by population
    states: _Draw  # of CURP state codes, by population


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise RuntimeError(
            f"falta el archivo {path}; SALUD_SHARED_DATA_DIR (o --data-dir) indica la carpeta "
            "de datos compartidos"
        )
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def _load_catalogs(data_dir: Path) -> _Catalogs:
    states_curp = {
        row["clave_inegi"].strip(): row["code"].strip()
        for row in _read_csv(data_dir / "inegi" / "estados_curp_inegi.csv")
    }
    affiliation_codes = {
        int(row["clave"]) for row in _read_csv(data_dir / "dgis" / "afiliacion.csv")
    }
    used = {code for codes, _ in _AFFILIATION_SETS for code in codes}
    if missing := used - affiliation_codes:
        raise RuntimeError(f"el catálogo DGIS de afiliación no tiene las claves {sorted(missing)}")

    localities: dict[tuple[str, str], list[tuple[str | None, float]]] = {}
    for row in _read_csv(data_dir / "inegi" / "localidades_inegi.csv"):
        localities.setdefault((row["cve_entidad"], row["cve_municipio"]), []).append(
            (row["cve_localidad"], float(row["poblacion_total"]))
        )

    municipalities: list[tuple[_Municipality, float]] = []
    state_population: dict[str, float] = {}
    for row in _read_csv(data_dir / "inegi" / "municipios_inegi.csv"):
        state, key = row["cve_entidad"], row["cve_municipio"]
        population = float(row["poblacion_total"])
        if population <= 0:
            continue
        listed = localities.get((state, key), [])
        # People outside the listed localities (those have 1,000+ inhabitants) live in
        # smaller ones: their locality key is unknown here, so it stays null.
        rest = population - sum(w for _, w in listed)
        options: list[tuple[str | None, float]] = [*listed, (None, rest)]
        municipalities.append(
            (_Municipality(state, states_curp[state], key, _Draw(options)), population)
        )
        state_population[states_curp[state]] = (
            state_population.get(states_curp[state], 0.0) + population
        )
    return _Catalogs(
        municipalities=_Draw(municipalities),
        states=_Draw(state_population.items()),
    )


def _email_slug(name: str) -> str:
    return search_key(name).lower().replace(" ", "")


def _names() -> tuple[
    tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...], list[str]
]:
    def clean(names: Sequence[str]) -> list[str]:
        return sorted({" ".join(n.split()) for n in names})

    male = clean(PersonProvider.first_names_male)
    female = clean(PersonProvider.first_names_female)
    return (
        tuple(n for n in male if " " not in n),
        tuple(n for n in male if " " in n),
        tuple(n for n in female if " " not in n),
        tuple(n for n in female if " " in n),
        clean(PersonProvider.last_names),
    )


def _luhn_digit(digits: str) -> str:
    """Check digit of the IMSS social security number (NSS): Luhn over the first 10."""
    total = 0
    for i, c in enumerate(digits):
        n = int(c) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return str((10 - total % 10) % 10)


def generate_persons(
    count: int, seed: int, data_dir: Path, *, as_of: date = REFERENCE_DATE
) -> Iterator[dict[str, Any]]:
    """`count` synthetic persons as import records; the same arguments give the same persons.

    Ages, affiliation and donor dates are counted back from `as_of` (a fixed date by default).
    CURPs are unique within one call.
    """
    if count < 0:
        raise ValueError("count no puede ser negativo")
    catalogs = _load_catalogs(data_dir)
    # Not for secrets: a reproducible stream of synthetic data.
    return _persons(count, random.Random(seed), catalogs, as_of)  # noqa: S311


def _persons(
    count: int, rng: random.Random, catalogs: _Catalogs, as_of: date
) -> Iterator[dict[str, Any]]:
    r = rng.random
    male1, male2, female1, female2, last_names = _names()
    slugs = {
        word: _email_slug(word)
        for name in (*male1, *male2, *female1, *female2)
        for word in name.split()
    }
    slugs.update((name, _email_slug(name)) for name in last_names)
    street_names = [*_STREET_NAMES, *last_names]
    street_prefixes = _Draw(_STREET_PREFIXES)
    ages = _Draw((g, share) for g, (share, _) in enumerate(_AGE_GROUPS))
    male_share = [men / 100 for _, men in _AGE_GROUPS]
    blood = _Draw(_BLOOD_TYPES)
    affiliation_sets = _Draw(_AFFILIATION_SETS)
    regimes = _Draw(_IMSS_REGIMES)
    foreign = _Draw(_FOREIGN_NATIONALITIES)
    municipalities = catalogs.municipalities
    states = catalogs.states
    as_of_ord = as_of.toordinal()
    year_days = 365.2425
    min_birth_ord = date(1900, 1, 1).toordinal()
    social_since = _SOCIAL_SECURITY_SINCE.toordinal()
    bienestar_since = min(_IMSS_BIENESTAR_SINCE.toordinal(), as_of_ord)
    digits = "0123456789"
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    used: set[str] = set()
    n_male1, n_male2 = len(male1), len(male2)
    n_female1, n_female2 = len(female1), len(female2)
    n_last, n_street = len(last_names), len(street_names)

    def pick_given(pool1: tuple[str, ...], n1: int, pool2: tuple[str, ...], n2: int) -> str:
        if r() >= _TWO_GIVEN_NAMES:
            return pool1[int(r() * n1)]
        if r() < 0.4:
            return pool2[int(r() * n2)]
        first = pool1[int(r() * n1)]
        second = pool1[int(r() * n1)]
        while second == first:
            second = pool1[int(r() * n1)]
        return f"{first} {second}"

    def date_between(start: int, end: int) -> date:
        if end <= start:
            return date.fromordinal(end)
        return date.fromordinal(start + int(r() * (end - start + 1)))

    for _ in range(count):
        # Age and sex.
        group = ages.index(r())
        if group == len(_AGE_GROUPS) - 1:
            age = 85.0 + min(rng.expovariate(1 / 6), 19.99)
        else:
            age = (group + r()) * 5
        birth_ord = max(as_of_ord - int(age * year_days), min_birth_ord)
        birth = date.fromordinal(birth_ord)
        years = int((as_of_ord - birth_ord) / year_days)
        sex = "X" if r() < _NON_BINARY_SHARE else "H" if r() < male_share[group] else "M"

        # Name.
        if sex == "H" or (sex == "X" and r() < 0.5):
            given = pick_given(male1, n_male1, male2, n_male2)
        else:
            given = pick_given(female1, n_female1, female2, n_female2)
        first_surname = last_names[int(r() * n_last)]
        second_surname = None if r() < _NO_SECOND_SURNAME else last_names[int(r() * n_last)]

        # Residence and birth place.
        municipality: _Municipality = municipalities.pick(r())
        locality = municipality.localities.pick(r())
        u = r()
        if u < _BORN_ABROAD:
            birth_state = "NE"
            nationality = "MEX" if r() < _BORN_ABROAD_MEXICAN else foreign.pick(r())
        else:
            nationality = "MEX"
            if u < _BORN_ABROAD + _BIRTH_STATE_IS_RESIDENCE:
                birth_state = municipality.state_curp
            else:
                birth_state = states.pick(r())
                while birth_state == municipality.state_curp:
                    birth_state = states.pick(r())

        # CURP, unique in this output: redraw the differentiator on a collision.
        pool = digits if birth.year < 2000 else letters
        differentiator = pool[int(r() * len(pool))]
        code = curp.generate(
            given, first_surname, second_surname, birth, sex, birth_state, differentiator
        )
        if code in used:
            tried = {differentiator}
            while code in used:
                free = [c for c in pool if c not in tried]
                if not free:  # every differentiator taken: one day earlier
                    birth_ord -= 1
                    birth = date.fromordinal(birth_ord)
                    pool = digits if birth.year < 2000 else letters
                    tried = set()
                    free = list(pool)
                differentiator = free[int(r() * len(free))]
                tried.add(differentiator)
                code = curp.generate(
                    given, first_surname, second_surname, birth, sex, birth_state, differentiator
                )
        used.add(code)

        # Contact.
        adult = years >= 18
        phone = None
        if r() < (_PHONE_ADULT if years >= 12 else _PHONE_CHILD):
            phone = f"+52{2_000_000_000 + int(r() * 8_000_000_000)}"
        email = None
        if years >= 15 and r() < _EMAIL_ADULT:
            g = slugs[given.split(" ", 1)[0]]
            s = slugs[first_surname]
            domain = _EMAIL_DOMAINS[int(r() * 3)]
            style = r()
            if style < 0.4:
                local = f"{g}.{s}{int(r() * 100)}"
            elif style < 0.7:
                local = f"{g}{s}{birth.year % 100:02d}"
            else:
                local = f"{g[0]}{s}{int(r() * 1000)}"
            email = f"{local}@{domain}"

        # Health data.
        blood_type = blood.pick(r())
        donor = "not_stated"
        donor_date = None
        if adult:
            u = r()
            if u < _DONOR_YES_ADULT + _DONOR_NO_ADULT:
                donor = "yes" if u < _DONOR_YES_ADULT else "no"
                start = max(birth_ord + int(18 * year_days), as_of_ord - 3652)
                donor_date = date_between(start, as_of_ord).isoformat()

        affiliations = []
        for institution in affiliation_sets.pick(r()):
            if institution == IMSS_BIENESTAR:
                since = date_between(max(birth_ord, bienestar_since), as_of_ord)
                member = None
                regime = None
            else:
                start = birth_ord + (int(18 * year_days) if adult else 0)
                since = date_between(max(start, social_since), as_of_ord)
                member = None
                regime = None
                if institution == IMSS:
                    body = (
                        f"{1 + int(r() * 99):02d}{since.year % 100:02d}"
                        f"{birth.year % 100:02d}{int(r() * 10_000):04d}"
                    )
                    member = body + _luhn_digit(body)
                    regime = regimes.pick(r())
            affiliations.append(
                {
                    "institution_code": institution,
                    "member_number": member,
                    "regime": regime,
                    "valid_from": since.isoformat(),
                    "valid_to": None,
                    "status": "active",
                }
            )

        number = "S/N" if r() < 0.04 else str(1 + int(r() * 2500))
        street = f"{street_prefixes.pick(r())} {street_names[int(r() * n_street)]} {number}"

        yield {
            "curp": code,
            "given_names": given,
            "first_surname": first_surname,
            "second_surname": second_surname,
            "birth_date": birth.isoformat(),
            "birth_state": birth_state,
            "sex": sex,
            "nationality": nationality,
            "blood_type": blood_type,
            "organ_donor": donor,
            "organ_donor_date": donor_date,
            "phone": phone,
            "email": email,
            "address": {
                "state": municipality.state_inegi,
                "municipality": municipality.key,
                "locality": locality,
                "postal_code": None,
                "street": street,
            },
            "assigned_clues": None,
            "affiliations": affiliations,
        }


def write_ndjson(persons: Iterable[dict[str, Any]], out: BinaryIO, *, batch: int = 2048) -> int:
    """Write one JSON object per line (UTF-8); return how many were written."""
    dumps = orjson.dumps
    lines: list[bytes] = []
    written = 0
    for person in persons:
        lines.append(dumps(person))
        if len(lines) >= batch:
            out.write(b"\n".join(lines) + b"\n")
            written += len(lines)
            lines.clear()
    if lines:
        out.write(b"\n".join(lines) + b"\n")
        written += len(lines)
    return written


def synthetic_face(seed: int, size: tuple[int, int] = (300, 375)) -> bytes:
    """A drawn portrait (JPEG) for a synthetic person: never a photo of anyone."""
    import io

    from PIL import Image, ImageDraw

    rng = random.Random(seed)  # noqa: S311 (a drawing, not a secret)
    w, h = size
    skin = rng.choice([(241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36)])
    hair = rng.choice([(20, 20, 20), (60, 40, 20), (110, 80, 50), (150, 150, 150)])
    shirt = tuple(rng.randrange(40, 200) for _ in range(3))
    image = Image.new("RGB", size, (225, 232, 240))
    d = ImageDraw.Draw(image)
    d.ellipse((w * 0.08, h * 0.72, w * 0.92, h * 1.35), fill=shirt)
    d.rectangle((w * 0.42, h * 0.55, w * 0.58, h * 0.78), fill=skin)
    d.ellipse((w * 0.25, h * 0.12, w * 0.75, h * 0.66), fill=skin)
    d.chord((w * 0.23, h * 0.08, w * 0.77, h * 0.5), 180, 360, fill=hair)
    eye_y = h * 0.38
    for x in (w * 0.4, w * 0.6):
        d.ellipse((x - 9, eye_y - 6, x + 9, eye_y + 6), fill="white")
        d.ellipse((x - 4, eye_y - 4, x + 4, eye_y + 4), fill=(40, 30, 20))
    d.arc((w * 0.42, h * 0.46, w * 0.58, h * 0.56), 20, 160, fill=(120, 40, 40), width=3)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def synthetic_fingerprint(seed: int, size: tuple[int, int] = (400, 480)) -> bytes:
    """A drawn fingerprint-like pattern (PNG, grayscale): ridges as a warped sinusoid inside
    an ellipse. For demos and tests of the capture checks; never anyone's print."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w * rng.uniform(0.45, 0.55), h * rng.uniform(0.4, 0.55)
    r = np.hypot((x - cx) * 1.15, y - cy)
    warp = 6 * np.sin(x / rng.uniform(30, 60)) + 4 * np.cos(y / rng.uniform(25, 50))
    ridges = 0.5 + 0.5 * np.sin((r + warp) / rng.uniform(1.6, 2.2))
    inside = ((x - w / 2) / (w * 0.42)) ** 2 + ((y - h / 2) / (h * 0.46)) ** 2 <= 1
    pixels = np.where(inside, 255 - ridges * 200, 245).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, "PNG", optimize=True)
    return out.getvalue()
