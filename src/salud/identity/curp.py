"""The CURP (Clave Única de Registro de Población): strict validation and generation.

Layout of the 18 characters (RENAPO, Instructivo Normativo para la Asignación de la CURP):

    1    first letter of the first surname
    2    first internal vowel of the first surname (X if none)
    3    first letter of the second surname (X if none)
    4    first letter of the given name used
    5-10 birth date YYMMDD
    11   sex: H, M or X (X = non-binary, since 2023)
    12-13 state of birth (NE = born abroad)
    14-16 first internal consonant of first surname, second surname and given name (X if none)
    17   differentiator: a digit for births 1900-1999, a letter from 2000 (it fixes the century)
    18   check digit

If the first four letters form an inconvenient word, RENAPO writes the second one as X.
Pure code: no database, no web framework. `validate` is on the bulk-import path, so it does
the common case with one precompiled regular expression and a few comparisons.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import accumulate
from pathlib import Path

from salud.config import get_settings
from salud.kit.clock import today_mx

__all__ = [
    "STATES",
    "CurpData",
    "CurpInvalid",
    "calc_check_digit",
    "generate",
    "is_valid",
    "load_inconvenient_words",
    "parse",
    "validate",
]

# The 32 federal entities plus NE (born abroad), as RENAPO codes them. Querétaro is QT.
STATES: dict[str, str] = {
    "AS": "AGUASCALIENTES",
    "BC": "BAJA CALIFORNIA",
    "BS": "BAJA CALIFORNIA SUR",
    "CC": "CAMPECHE",
    "CL": "COAHUILA",
    "CM": "COLIMA",
    "CS": "CHIAPAS",
    "CH": "CHIHUAHUA",
    "DF": "CIUDAD DE MÉXICO",
    "DG": "DURANGO",
    "GT": "GUANAJUATO",
    "GR": "GUERRERO",
    "HG": "HIDALGO",
    "JC": "JALISCO",
    "MC": "ESTADO DE MÉXICO",
    "MN": "MICHOACÁN",
    "MS": "MORELOS",
    "NT": "NAYARIT",
    "NL": "NUEVO LEÓN",
    "OC": "OAXACA",
    "PL": "PUEBLA",
    "QT": "QUERÉTARO",
    "QR": "QUINTANA ROO",
    "SP": "SAN LUIS POTOSÍ",
    "SL": "SINALOA",
    "SR": "SONORA",
    "TC": "TABASCO",
    "TS": "TAMAULIPAS",
    "TL": "TLAXCALA",
    "VZ": "VERACRUZ",
    "YN": "YUCATÁN",
    "ZS": "ZACATECAS",
    "NE": "NACIDO EN EL EXTRANJERO",
}

_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_VOWELS = frozenset("AEIOU")
_CONSONANTS = _LETTERS - _VOWELS  # X included: it also stands for Ñ and for "none"
_SEXES = frozenset("HMX")
_STATE_PATTERN = "|".join(sorted(STATES))

# The whole structure in one pass; when it matches, only the date, the check digit and the
# word list remain to be checked. When it does not, the checks run one by one for the reason.
_STRUCTURE = re.compile(
    r"[A-Z][AEIOUX][A-Z]{2}[0-9]{6}[HMX]"
    rf"(?:{_STATE_PATTERN})"
    r"[B-DF-HJ-NP-TV-Z]{3}[0-9A-Z][0-9]"
)
_CHARACTERS = re.compile(r"[A-Z0-9]{18}")
_BAD_CHARACTER = re.compile(r"[^A-Z0-9]")

_POSITION_NAMES = {
    2: "la inicial del segundo apellido",
    3: "la inicial del nombre",
    13: "la primera consonante interna del primer apellido",
    14: "la primera consonante interna del segundo apellido",
    15: "la primera consonante interna del nombre",
}

_INCONVENIENT_FILE = Path("curp") / "palabras_inconvenientes_curp_rfc.json"


# RENAPO's check digit (the algorithm python-stdnum's mx.curp implements): each of the first
# 17 characters has a value in the alphabet 0-9, A-N, Ñ (written &), O-Z; weights 18 down to 2;
# the digit is (10 - sum mod 10) mod 10. Written out here because it is on the bulk-import
# hot path: a table lookup is several times faster; a test checks it against stdnum.
_CHECK_ALPHABET = "0123456789ABCDEFGHIJKLMN&OPQRSTUVWXYZ"
_CHECK_VALUES = bytes.maketrans(_CHECK_ALPHABET.encode(), bytes(range(len(_CHECK_ALPHABET))))


def calc_check_digit(curp: str) -> str:
    """The check digit for the first 17 characters of a CURP (validated characters only).

    The weighted sum v1*18 + v2*17 + … + v17*2 equals the sum of the 17 prefix sums plus the
    full sum, which itertools.accumulate computes in C.
    """
    values = curp[:17].encode("ascii").translate(_CHECK_VALUES)
    total = sum(accumulate(values)) + sum(values)
    return str((10 - total % 10) % 10)


class CurpInvalid(ValueError):
    """A CURP that breaks a rule. `code` is for machines, `reason` (Spanish) for people."""

    code: str
    reason: str

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class CurpData:
    birth_date: date
    sex: str  # 'H' | 'M' | 'X'
    state: str  # RENAPO code such as 'HG', or 'NE' (born abroad)


# --- inconvenient words -------------------------------------------------------------------


def load_inconvenient_words(path: Path) -> frozenset[str]:
    """The CURP list (key "curp", not the RFC one) of the shared JSON file."""
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    try:
        words = data["curp"]["cacophonic_words"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: falta la lista curp.cacophonic_words") from None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"{path}: curp.cacophonic_words debe ser una lista de textos")
    return frozenset(w.strip().upper() for w in words)


_default_words: frozenset[str] | None = None


def _inconvenient_words() -> frozenset[str]:
    global _default_words
    if _default_words is None:
        path = get_settings().shared_data_dir / _INCONVENIENT_FILE
        if not path.is_file():
            raise RuntimeError(
                f"no se encontró la lista de palabras inconvenientes de la CURP en {path}; "
                "la variable de entorno SALUD_SHARED_DATA_DIR indica la carpeta de datos "
                "compartidos que la contiene"
            )
        _default_words = load_inconvenient_words(path)
    return _default_words


# --- validation ---------------------------------------------------------------------------


def _fail(code: str, reason: str) -> CurpInvalid:
    return CurpInvalid(code, reason)


def _check_prefix(curp: str) -> None:
    """Length, characters and positions 1-4, in that order (only called off the fast path)."""
    if len(curp) != 18:
        raise _fail("length", f"la CURP debe tener 18 caracteres y tiene {len(curp)}")
    if _CHARACTERS.fullmatch(curp) is None:
        bad = _BAD_CHARACTER.search(curp)
        assert bad is not None
        raise _fail(
            "characters",
            f"el carácter «{bad.group()}» en la posición {bad.start() + 1} no es válido: "
            "la CURP solo lleva letras mayúsculas A-Z y dígitos 0-9",
        )
    if curp[0] not in _LETTERS:
        raise _fail(
            "first_letter",
            f"la posición 1 (inicial del primer apellido) debe ser una letra, no «{curp[0]}»",
        )
    if curp[1] not in "AEIOUX":
        raise _fail(
            "vowel",
            "la posición 2 (primera vocal interna del primer apellido) debe ser "
            f"A, E, I, O, U o X, no «{curp[1]}»",
        )
    for i in (2, 3):
        if curp[i] not in _LETTERS:
            raise _fail(
                "initials",
                f"la posición {i + 1} ({_POSITION_NAMES[i]}) debe ser una letra, no «{curp[i]}»",
            )


def _check_middle(curp: str) -> None:
    """Sex, state and consonants, in that order (only called off the fast path)."""
    if curp[10] not in _SEXES:
        raise _fail("sex", f"la posición 11 (sexo) debe ser H, M o X, no «{curp[10]}»")
    if curp[11:13] not in STATES:
        raise _fail(
            "state",
            f"«{curp[11:13]}» (posiciones 12 y 13) no es una clave de entidad federativa "
            "de la CURP",
        )
    for i in (13, 14, 15):
        if curp[i] not in _CONSONANTS:
            raise _fail(
                "consonants",
                f"la posición {i + 1} ({_POSITION_NAMES[i]}) debe ser una consonante o X, "
                f"no «{curp[i]}»",
            )


def validate(curp: str, *, today: date | None = None) -> CurpData:
    """Check every rule of a CURP; raise CurpInvalid naming the first broken one.

    Strict: no trimming, no upper-casing. `today` (default: today's civil date in Mexico)
    is the limit a birth date may not pass.
    """
    structured = _STRUCTURE.fullmatch(curp) is not None
    if not structured:
        _check_prefix(curp)
        digits = curp[4:10]
        if not digits.isdigit():
            raise _fail(
                "birth_date",
                f"las posiciones 5 a 10 deben ser la fecha de nacimiento AAMMDD, no «{digits}»",
            )

    year = int(curp[4:6])
    month = int(curp[6:8])
    day = int(curp[8:10])
    digit_differentiator = curp[16] <= "9"  # [0-9A-Z] here; digits sort before letters
    year += 1900 if digit_differentiator else 2000
    # The date must exist; when it exists only in the other century (000229: 2000 was a
    # leap year, 1900 was not) the fault is the differentiator, reported at its turn.
    born: date | None
    try:
        born = date(year, month, day)
    except ValueError:
        born = None
        other = year + 100 if digit_differentiator else year - 100
        try:
            date(other, month, day)
        except ValueError:
            raise _fail(
                "birth_date",
                f"«{curp[4:10]}» (posiciones 5 a 10) no es una fecha de nacimiento real",
            ) from None

    if born is not None:
        limit = today if today is not None else today_mx()
        if born > limit:
            hint = " (la posición 17 es una letra: nacimiento desde 2000)" if year >= 2000 else ""
            raise _fail(
                "future_birth_date",
                f"la fecha de nacimiento {born.isoformat()}{hint} es posterior a hoy "
                f"({limit.isoformat()})",
            )

    if not structured:
        _check_middle(curp)

    if born is None:
        if digit_differentiator:
            reason = (
                f"la posición 17 es un dígito (nacimiento antes de 2000), pero {year}-02-29 "
                "no existe; para 2000 debería ser una letra"
            )
        else:  # unreachable with the Gregorian calendar, kept for completeness
            reason = "la posición 17 no corresponde al siglo de la fecha de nacimiento"
        raise _fail("differentiator", reason)

    expected = calc_check_digit(curp)
    if curp[17] != expected:
        raise _fail("check_digit", f"el dígito verificador debería ser {expected}")

    if curp[:4] in _inconvenient_words():
        raise _fail(
            "inconvenient_word",
            f"las primeras cuatro letras forman la palabra inconveniente «{curp[:4]}»; "
            f"RENAPO escribe la segunda letra como X ({curp[0]}X{curp[2:4]})",
        )
    return CurpData(birth_date=born, sex=curp[10], state=curp[11:13])


def parse(curp: str, *, today: date | None = None) -> CurpData:
    """Validate and return what the CURP encodes (birth date, sex, state of birth)."""
    return validate(curp, today=today)


def is_valid(curp: str) -> bool:
    try:
        validate(curp)
    except CurpInvalid:
        return False
    return True


# --- generation ---------------------------------------------------------------------------

# Words skipped in compound names and surnames when another word follows (RENAPO).
_PARTICLES = frozenset(
    {
        *("DA", "DAS", "DE", "DEL", "DER", "DI", "DIE", "DD", "EL", "LA"),
        *("LOS", "LAS", "LE", "LES", "MAC", "MC", "VAN", "VON", "Y"),
    }
)
# Given names so common that, followed by another name, the second one is used.
_COMMON_GIVEN = frozenset({"MARIA", "MA", "M", "JOSE", "J"})
_DROPPED = str.maketrans("", "", ".'’ʼ`´")  # dots and apostrophe look-alikes
_SEPARATORS = str.maketrans({"-": " ", "/": " ", ",": " ", "_": " "})


@lru_cache(maxsize=16384)
def _words(text: str) -> tuple[str, ...]:
    """RENAPO form of a name: upper case, no accents, Ñ as X, any other non A-Z letter as X;
    dots and apostrophes dropped; particles skipped when another word follows."""
    if text.isascii():
        upper = text.upper()
    else:
        upper = unicodedata.normalize("NFC", text).upper().replace("Ñ", "X")
        decomposed = unicodedata.normalize("NFKD", upper)
        upper = "".join(c for c in decomposed if not unicodedata.combining(c))
    raw = upper.translate(_DROPPED).translate(_SEPARATORS).split()
    words = ["".join(c if c in _LETTERS else "X" for c in w) for w in raw]
    last = len(words) - 1
    return tuple(w for i, w in enumerate(words) if i == last or w not in _PARTICLES)


def _internal(word: str, wanted: frozenset[str]) -> str:
    for c in word[1:]:
        if c in wanted:
            return c
    return "X"


def generate(
    given_names: str,
    first_surname: str,
    second_surname: str | None,
    birth_date: date,
    sex: str,
    state: str,
    differentiator: str | None = None,
) -> str:
    """Build the CURP RENAPO would assign (with the given or default differentiator)."""
    given = _words(given_names)
    if not given:
        raise ValueError("el nombre no puede estar vacío")
    first = _words(first_surname)
    if not first:
        raise ValueError("el primer apellido no puede estar vacío")
    second = _words(second_surname) if second_surname else ()
    if sex not in _SEXES:
        raise ValueError(f"sexo inválido «{sex}»: debe ser H, M o X")
    if state not in STATES:
        raise ValueError(f"«{state}» no es una clave de entidad de la CURP")
    year = birth_date.year
    if not 1900 <= year <= 2099:
        raise ValueError(f"la CURP solo cubre nacimientos de 1900 a 2099, no {year}")
    if birth_date > today_mx():
        raise ValueError(f"la fecha de nacimiento {birth_date.isoformat()} está en el futuro")
    if differentiator is None:
        differentiator = "0" if year < 2000 else "A"
    elif year < 2000:
        if len(differentiator) != 1 or not "0" <= differentiator <= "9":
            raise ValueError(
                f"diferenciador «{differentiator}» inválido: para nacimientos antes de 2000 "
                "debe ser un dígito 0-9"
            )
    elif len(differentiator) != 1 or differentiator not in _LETTERS:
        raise ValueError(
            f"diferenciador «{differentiator}» inválido: para nacimientos desde 2000 "
            "debe ser una letra A-Z"
        )

    use_second = len(given) > 1 and given[0] in _COMMON_GIVEN and given[1] not in _PARTICLES
    name = given[1] if use_second else given[0]
    surname1 = first[0]
    surname2 = second[0] if second else ""
    head = surname1[0] + _internal(surname1, _VOWELS) + (surname2[0] if surname2 else "X") + name[0]
    if head in _inconvenient_words():
        head = head[0] + "X" + head[2:]
    body = (
        f"{head}{year % 100:02d}{birth_date.month:02d}{birth_date.day:02d}{sex}{state}"
        f"{_internal(surname1, _CONSONANTS)}"
        f"{_internal(surname2, _CONSONANTS) if surname2 else 'X'}"
        f"{_internal(name, _CONSONANTS)}{differentiator}"
    )
    return body + str(calc_check_digit(body))


def name_mismatch(
    curp: str,
    given_names: str,
    first_surname: str,
    second_surname: str | None,
    birth_date: date,
    sex: str,
    state: str,
) -> str | None:
    """Why the CURP is not this person's, or None. Its first 16 characters follow from the
    names, birth date, sex and state (the homonym differentiator and check digit do not), so a
    CURP typed for another person, or names changed without a new CURP, are caught."""
    try:
        expected = generate(given_names, first_surname, second_surname, birth_date, sex, state)
    except ValueError as exc:
        return str(exc)
    if expected[:16] != curp[:16]:
        return f"no corresponde al nombre y los datos de la persona (se esperaba {expected[:16]}…)"
    return None
