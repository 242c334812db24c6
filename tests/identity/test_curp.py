"""CURP rules: hand-built examples, one test per failure code, and properties.

Every person here is invented. Expected CURPs were worked out by hand from the RENAPO rules
(positions 1-17); the check digit was verified by hand for the first one and is otherwise
cross-checked against python-stdnum.
"""

from __future__ import annotations

import json
import pickle
import string
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.mx.curp import calc_check_digit

from salud.config import get_settings
from salud.identity import curp
from salud.identity.curp import CurpData, CurpInvalid, generate, is_valid, parse, validate
from salud.kit.clock import today_mx

WORDS_PATH = get_settings().shared_data_dir / "curp" / "palabras_inconvenientes_curp_rfc.json"
if not WORDS_PATH.is_file():  # the rules need the RENAPO word list
    pytest.skip(f"sin datos compartidos en {WORDS_PATH}", allow_module_level=True)

INCONVENIENT = curp.load_inconvenient_words(WORDS_PATH)
CONSONANTS = set("BCDFGHJKLMNPQRSTVWXYZ")
ALPHABET = string.ascii_uppercase + string.digits


def with_check_digit(first17: str) -> str:
    assert len(first17) == 17
    return first17 + calc_check_digit(first17)


# --- known-good examples -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_names", "first", "second", "born", "sex", "state", "diff", "expected"),
    [
        # PÉREZ: P, E, internal consonant R; LÓPEZ: L, P; JUANA: J, N.
        ("Juana", "Pérez", "López", date(1990, 5, 17), "M", "HG", None, "PELJ900517MHGRPN05"),
        # MARÍA followed by another name: JOSÉ is used (J, S); born 2005: letter.
        ("María José", "García", "Hernández", date(2005, 3, 12), "M", "JC", None, None),
        # DE LA skipped: CRUZ (C, U, R); JOSÉ LUIS -> LUIS (L, S).
        ("José Luis", "de la Cruz", "Martínez", date(1978, 11, 2), "H", "DF", None, None),
        # Ñ is written X: NÚÑEZ has N, U and internal consonant X.
        ("Ana", "Núñez", "Ibarra", date(1985, 7, 21), "M", "OC", None, None),
        # No second surname: X in positions 3 and 15.
        ("Pedro", "Ramírez", None, date(1960, 1, 31), "H", "NL", None, None),
        ("Pedro", "Ramírez", "", date(1960, 1, 31), "H", "NL", None, None),
        # Born abroad.
        ("Carlos", "Ortiz", "Vega", date(1995, 9, 9), "H", "NE", "4", None),
        # Non-binary, born 2001, explicit letter.
        ("Alex", "Torres", "Luna", date(2001, 12, 1), "X", "CS", "K", None),
        # MA. DEL CARMEN -> CARMEN; apostrophe dropped; PEÑA gives X as consonant.
        ("Ma. del Carmen", "D'Angelo", "Peña", date(1970, 2, 28), "M", "QT", None, None),
        # Born 1 January 1900, the earliest a CURP can encode.
        ("Ernesto", "Uribe", "Olvera", date(1900, 1, 1), "H", "ZS", "9", None),
    ],
)
def test_known_good(
    given_names: str,
    first: str,
    second: str | None,
    born: date,
    sex: str,
    state: str,
    diff: str | None,
    expected: str | None,
) -> None:
    prefixes = {
        "Juana": "PELJ900517MHGRPN0",
        "María José": "GAHJ050312MJCRRSA",
        "José Luis": "CUML781102HDFRRS0",
        "Ana": "NUIA850721MOCXBN0",
        "Pedro": "RAXP600131HNLMXD0",
        "Carlos": "OIVC950909HNERGR4",
        "Alex": "TOLA011201XCSRNLK",
        "Ma. del Carmen": "DAPC700228MQTNXR0",
        "Ernesto": "UIOE000101HZSRLR9",
    }
    result = generate(given_names, first, second, born, sex, state, diff)
    assert result == with_check_digit(prefixes[given_names])
    if expected is not None:
        assert result == expected
    assert validate(result) == CurpData(birth_date=born, sex=sex, state=state)
    assert parse(result) == CurpData(birth_date=born, sex=sex, state=state)
    assert is_valid(result)


def test_default_differentiator_by_century() -> None:
    assert generate("Luis", "Soto", "Mena", date(1999, 12, 31), "H", "SR")[16] == "0"
    assert generate("Luis", "Soto", "Mena", date(2000, 1, 1), "H", "SR")[16] == "A"


def test_jose_alone_is_used() -> None:
    assert generate("José", "Solís", "Cano", date(1980, 1, 1), "H", "TC")[3] == "J"
    assert generate("Maria", "Solís", "Cano", date(1980, 1, 1), "M", "TC")[3] == "M"
    assert generate("M. Fernanda", "Solís", "Cano", date(1980, 1, 1), "M", "TC")[3] == "F"
    assert generate("J. Ramón", "Solís", "Cano", date(1980, 1, 1), "H", "TC")[3] == "R"


def test_particles_in_given_names_and_surnames() -> None:
    # MARÍA DE LOS ÁNGELES -> ÁNGELES; DEL VALLE -> VALLE; MC GREGOR -> GREGOR.
    result = generate("María de los Ángeles", "del Valle", "Mc Gregor", date(1988, 8, 8), "M", "YN")
    assert result[:4] == "VXGA"  # VAGA is an inconvenient word: second letter X
    assert result[13:16] == "LRN"
    # A particle alone is a real surname: "Y" stays.
    assert generate("Ana", "Y", "Ríos", date(1988, 8, 8), "M", "YN")[:2] == "YX"


def test_non_latin_letter_becomes_x_and_hyphen_separates() -> None:
    result = generate("Øyvind", "Lund-Hansen", "Berg", date(1975, 3, 3), "H", "NE")
    assert result[:4] == "LUBX"  # Ø is not A-Z after normalization
    assert result[13:16] == "NRY"


def test_generate_refuses_bad_input() -> None:
    born = date(1990, 1, 1)
    with pytest.raises(ValueError, match="sexo"):
        generate("Ana", "Ruiz", "Mora", born, "F", "HG")
    with pytest.raises(ValueError, match="entidad"):
        generate("Ana", "Ruiz", "Mora", born, "M", "QO")
    with pytest.raises(ValueError, match="dígito"):
        generate("Ana", "Ruiz", "Mora", born, "M", "HG", "A")
    with pytest.raises(ValueError, match="letra"):
        generate("Ana", "Ruiz", "Mora", date(2010, 1, 1), "M", "HG", "1")
    with pytest.raises(ValueError, match="nombre"):
        generate("  ", "Ruiz", "Mora", born, "M", "HG")
    with pytest.raises(ValueError, match="primer apellido"):
        generate("Ana", "", "Mora", born, "M", "HG")
    with pytest.raises(ValueError, match="futuro"):
        generate("Ana", "Ruiz", "Mora", date(2099, 1, 1), "M", "HG", "A")
    with pytest.raises(ValueError, match="1900"):
        generate("Ana", "Ruiz", "Mora", date(1899, 12, 31), "M", "HG")


# --- one test per failure code -------------------------------------------------------------

GOOD = "PELJ900517MHGRPN05"


def code_of(value: str, today: date | None = None) -> str:
    with pytest.raises(CurpInvalid) as info:
        validate(value, today=today)
    assert str(info.value) == info.value.reason
    assert info.value.reason  # a sentence for people
    assert not is_valid(value) or today is not None
    return info.value.code


def test_length() -> None:
    assert code_of(GOOD[:17]) == "length"
    assert code_of(GOOD + "0") == "length"
    assert code_of(" " + GOOD[:17]) != "length"  # 18 characters; a space is a bad character


def test_characters_no_silent_uppercasing_or_trimming() -> None:
    assert code_of(GOOD.lower()) == "characters"
    assert code_of(" " + GOOD[1:]) == "characters"
    assert code_of(GOOD[:17] + "Ñ") == "characters"


def test_first_letter() -> None:
    assert code_of(with_check_digit("1ELJ900517MHGRPN0")) == "first_letter"


def test_vowel() -> None:
    assert code_of(with_check_digit("PBLJ900517MHGRPN0")) == "vowel"


def test_initials() -> None:
    assert code_of(with_check_digit("PE1J900517MHGRPN0")) == "initials"
    assert code_of(with_check_digit("PEL9900517MHGRPN0")) == "initials"


def test_birth_date() -> None:
    assert code_of(with_check_digit("PELJ310230MHGRPN0")) == "birth_date"
    assert code_of(with_check_digit("PELJ901317MHGRPN0")) == "birth_date"
    assert code_of(with_check_digit("PELJ9005A7MHGRPN0")) == "birth_date"


def test_future_birth_date() -> None:
    value = generate("Luz", "Pérez", "Ortega", date(2023, 6, 1), "M", "HG")
    assert validate(value, today=date(2023, 6, 1)).birth_date == date(2023, 6, 1)
    assert code_of(value, today=date(2023, 5, 31)) == "future_birth_date"
    # Letter differentiator and year 85: 2085, in the future.
    assert code_of(with_check_digit("PELJ850517MHGRPNA")) == "future_birth_date"


def test_sex() -> None:
    assert code_of(with_check_digit("PELJ900517FHGRPN0")) == "sex"


def test_state() -> None:
    assert code_of(with_check_digit("PELJ900517MQORPN0")) == "state"  # Querétaro is QT


def test_consonants() -> None:
    assert code_of(with_check_digit("PELJ900517MHGAPN0")) == "consonants"
    assert code_of(with_check_digit("PELJ900517MHGRP10")) == "consonants"


def test_differentiator() -> None:
    # 29 February 00 exists only in 2000 (1900 was no leap year): a digit says 1900.
    assert code_of(with_check_digit("PELJ000229MHGRPN0")) == "differentiator"
    assert validate(with_check_digit("PELJ000229MHGRPNA")).birth_date == date(2000, 2, 29)


def test_check_digit() -> None:
    wrong = GOOD[:17] + "6"
    with pytest.raises(CurpInvalid) as info:
        validate(wrong)
    assert info.value.code == "check_digit"
    assert info.value.reason == "el dígito verificador debería ser 5"
    assert code_of(GOOD[:17] + "A") == "check_digit"


def test_inconvenient_word() -> None:
    # BUENDÍA ESPINOSA, YOLANDA would start with BUEY: RENAPO writes BXEY.
    value = generate("Yolanda", "Buendía", "Espinosa", date(1999, 4, 30), "M", "PL")
    assert value == with_check_digit("BXEY990430MPLNSL0")
    assert validate(value).state == "PL"
    forged = with_check_digit("BUEY" + value[4:17])
    with pytest.raises(CurpInvalid) as info:
        validate(forged)
    assert info.value.code == "inconvenient_word"
    assert "BXEY" in info.value.reason


def test_order_of_checks() -> None:
    # Several faults: the first in the documented order is reported.
    assert code_of(with_check_digit("PBLJ310230FQOAPN0")) == "vowel"
    assert code_of(with_check_digit("PELJ310230FQOAPN0")) == "birth_date"
    assert code_of(with_check_digit("PELJ000229FQOAPN0")) == "sex"


def test_exception_shape() -> None:
    exc = CurpInvalid("sex", "la posición 11 (sexo) debe ser H, M o X, no «F»")
    assert isinstance(exc, ValueError)
    assert str(exc) == exc.reason
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.code, copy.reason) == (exc.code, exc.reason)


def test_states_catalog() -> None:
    assert len(curp.STATES) == 33
    assert curp.STATES["NE"] == "NACIDO EN EL EXTRANJERO"
    assert "QT" in curp.STATES
    assert "QO" not in curp.STATES


def test_load_inconvenient_words_uses_curp_list(tmp_path: Path) -> None:
    assert "BUEY" in INCONVENIENT
    assert "LOCO" in INCONVENIENT  # in the CURP list, not in the RFC one
    path = tmp_path / "words.json"
    path.write_text(json.dumps({"curp": {"cacophonic_words": ["abcd"]}, "rfc": {}}))
    assert curp.load_inconvenient_words(path) == frozenset({"ABCD"})
    path.write_text(json.dumps({"rfc": {"cacophonic_words": ["ABCD"]}}))
    with pytest.raises(ValueError, match="curp"):
        curp.load_inconvenient_words(path)


def test_missing_word_list_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SALUD_SHARED_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(curp, "_default_words", None)
    get_settings.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="SALUD_SHARED_DATA_DIR") as info:
            validate(GOOD)
        assert str(tmp_path) in str(info.value)
    finally:
        get_settings.cache_clear()


# --- properties ----------------------------------------------------------------------------

TODAY = today_mx()
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

word_letters = st.sampled_from(
    list(string.ascii_uppercase) + list(string.ascii_lowercase) + list("ÁÉÍÓÚÜÑáéíóúüñ")
)
plain_word = st.text(word_letters, min_size=1, max_size=10)
particle = st.sampled_from(["de", "DE LA", "del", "De Los", "Mc", "van", "Y", "la"])


@st.composite
def compound(draw: st.DrawFn, max_words: int = 3) -> str:
    words = draw(st.lists(plain_word, min_size=1, max_size=max_words))
    if draw(st.booleans()):
        words.insert(0, draw(particle))
    return " ".join(words)


@st.composite
def given_names_st(draw: st.DrawFn) -> str:
    name = draw(compound())
    prefix = draw(st.sampled_from(["", "", "María ", "Ma. ", "JOSÉ ", "J. "]))
    return prefix + name


@st.composite
def person(draw: st.DrawFn) -> tuple[str, str, str | None, date, str, str, str | None]:
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=TODAY))
    pool = string.digits if born.year < 2000 else string.ascii_uppercase
    diff = draw(st.none() | st.sampled_from(pool))
    return (
        draw(given_names_st()),
        draw(compound()),
        draw(st.none() | st.just("") | compound()),
        born,
        draw(st.sampled_from("HMX")),
        draw(st.sampled_from(sorted(curp.STATES))),
        diff,
    )


@st.composite
def near_inconvenient(draw: st.DrawFn) -> tuple[str, str, str | None, date, str, str, str | None]:
    """A person whose initials spell an inconvenient word, so RENAPO writes its 2nd letter X."""
    word = draw(st.sampled_from(sorted(INCONVENIENT)))
    p = draw(person())
    # First surname: first letter and internal vowel; then the second surname and the name.
    return (word[3] + "ORA", word[0] + word[1] + "RR", word[2] + "ERA", *p[3:])


valid_curps = (person() | near_inconvenient()).map(lambda p: generate(*p))


@PROPERTY_SETTINGS
@given(person())
def test_every_generated_curp_validates(
    p: tuple[str, str, str | None, date, str, str, str | None],
) -> None:
    value = generate(*p)
    assert is_valid(value)
    assert value[:4] not in INCONVENIENT


@PROPERTY_SETTINGS
@given(person())
def test_parse_returns_what_was_generated(
    p: tuple[str, str, str | None, date, str, str, str | None],
) -> None:
    _, _, _, born, sex, state, diff = p
    value = generate(*p)
    assert parse(value) == CurpData(birth_date=born, sex=sex, state=state)
    if diff is not None:
        assert value[16] == diff


REJECTION_CODES = frozenset(
    {
        *("first_letter", "vowel", "initials", "birth_date", "future_birth_date", "sex"),
        *("state", "consonants", "differentiator", "check_digit", "inconvenient_word"),
    }
)


def consistent(value: str, data: CurpData) -> None:
    """What an accepted string must satisfy, checked here independently of the module."""
    assert value[0] in string.ascii_uppercase
    assert value[1] in "AEIOUX"
    assert value[2] in string.ascii_uppercase
    assert value[3] in string.ascii_uppercase
    assert value[:4] not in INCONVENIENT
    century = 1900 if value[16].isdigit() else 2000
    yy, mm, dd = int(value[4:6]), int(value[6:8]), int(value[8:10])
    assert data.birth_date == date(century + yy, mm, dd)
    assert data.birth_date <= TODAY
    assert data.sex == value[10]
    assert data.sex in "HMX"
    assert data.state == value[11:13]
    assert data.state in curp.STATES
    assert set(value[13:16]) <= CONSONANTS
    assert value[17] == calc_check_digit(value)


@PROPERTY_SETTINGS
@given(valid_curps)
def test_single_substitution_is_rejected_or_consistent(original: str) -> None:
    """Every position, every other character of A-Z0-9: 17 x 35 + 1 x 35 variants each."""
    for position in range(18):
        for char in ALPHABET:
            if char == original[position]:
                continue
            mutated = original[:position] + char + original[position + 1 :]
            data: CurpData | None = None
            code = ""
            try:
                data = validate(mutated, today=TODAY)
            except CurpInvalid as exc:
                code = exc.code
            if data is None:
                # Substitutions keep length and alphabet: those two codes cannot be the reason.
                assert code in REJECTION_CODES, (mutated, code)
                continue
            # Accepted: another identifier, and what it says must match its characters.
            assert position != 17, f"a changed check digit was accepted: {mutated}"
            assert mutated != original
            consistent(mutated, data)


@PROPERTY_SETTINGS
@given(valid_curps)
def test_every_check_digit_change_is_rejected(value: str) -> None:
    for digit in string.digits:
        if digit != value[17]:
            with pytest.raises(CurpInvalid):
                validate(value[:17] + digit)


@settings(max_examples=300)
@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=17, max_size=17))
def test_check_digit_agrees_with_python_stdnum(body: str) -> None:
    from stdnum.mx.curp import calc_check_digit as stdnum_check_digit

    assert curp.calc_check_digit(body) == stdnum_check_digit(body)


@given(
    st.sampled_from(["JUANA", "PEDRO", "MARÍA JOSÉ", "ÁNGEL"]),
    st.sampled_from(["PÉREZ", "NÚÑEZ", "DE LA CRUZ"]),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31)),
)
def test_a_generated_curp_matches_its_names_and_no_other(
    given_names: str, surname: str, birth: date
) -> None:
    generated = curp.generate(given_names, surname, "LÓPEZ", birth, "M", "DF")
    assert curp.name_mismatch(generated, given_names, surname, "LÓPEZ", birth, "M", "DF") is None
    wrong = curp.name_mismatch(generated, "ZOE", surname, "LÓPEZ", birth, "M", "DF")
    assert wrong is not None
    assert "se esperaba" in wrong
