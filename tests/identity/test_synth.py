"""Synthetic persons: reproducible, valid CURPs, the import shape, plausible distributions."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from salud.cli.synth import app
from salud.config import get_settings
from salud.identity import curp
from salud.identity.synth import REFERENCE_DATE, generate_persons, write_ndjson

DATA = get_settings().shared_data_dir
if not (DATA / "inegi" / "municipios_inegi.csv").is_file():
    pytest.skip(f"sin datos compartidos en {DATA}", allow_module_level=True)

N = 20_000
PERSON_KEYS = {
    "curp",
    "given_names",
    "first_surname",
    "second_surname",
    "birth_date",
    "birth_state",
    "sex",
    "nationality",
    "blood_type",
    "organ_donor",
    "organ_donor_date",
    "phone",
    "email",
    "address",
    "assigned_clues",
    "affiliations",
}
ADDRESS_KEYS = {"state", "municipality", "locality", "postal_code", "street"}
AFFILIATION_KEYS = {
    "institution_code",
    "member_number",
    "regime",
    "valid_from",
    "valid_to",
    "status",
}
BLOOD_TYPES = {"O+", "O-", "A+", "A-", "B+", "B-", "AB+", "AB-", "unknown"}
PHONE = re.compile(r"\+52[1-9]\d{9}")
EMAIL = re.compile(r"[a-z0-9.]+@example\.(com|org|net)")


def ndjson(count: int, seed: int) -> bytes:
    buf = io.BytesIO()
    assert write_ndjson(generate_persons(count, seed, DATA), buf) == count
    return buf.getvalue()


def read_csv(relative: str) -> list[dict[str, str]]:
    with (DATA / relative).open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def people() -> list[dict[str, Any]]:
    return list(generate_persons(N, 20260101, DATA))


def share(people: list[dict[str, Any]], predicate: Any) -> float:
    return sum(1 for p in people if predicate(p)) / len(people)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, c in enumerate(number[:10]):
        n = int(c) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return (total + int(number[10])) % 10 == 0


# --- reproducibility and format --------------------------------------------------------------


def test_same_seed_same_bytes() -> None:
    assert ndjson(2_000, 42) == ndjson(2_000, 42)


def test_different_seed_different_output() -> None:
    assert ndjson(200, 1) != ndjson(200, 2)


def test_ndjson_lines() -> None:
    data = ndjson(50, 3)
    lines = data.split(b"\n")
    assert data.endswith(b"\n")
    assert lines[-1] == b""
    assert len(lines) == 51
    for line in lines[:-1]:
        assert set(orjson.loads(line)) == PERSON_KEYS
    assert ndjson(0, 3) == b""


def test_exact_shape(people: list[dict[str, Any]]) -> None:
    for p in people:
        assert set(p) == PERSON_KEYS
        assert list(p) == list(people[0])  # same key order on every line
        assert set(p["address"]) == ADDRESS_KEYS
        assert p["nationality"] == "MEX" or p["birth_state"] == "NE"
        assert p["blood_type"] in BLOOD_TYPES
        assert p["assigned_clues"] is None
        assert p["address"]["postal_code"] is None
        assert p["address"]["street"]
        assert p["given_names"].strip() == p["given_names"]
        assert p["first_surname"]
        assert p["second_surname"] is None or p["second_surname"]
        assert p["phone"] is None or PHONE.fullmatch(p["phone"])
        assert p["email"] is None or EMAIL.fullmatch(p["email"])
        assert (p["organ_donor_date"] is not None) == (p["organ_donor"] in {"yes", "no"})
        born = date.fromisoformat(p["birth_date"])
        if p["organ_donor_date"] is not None:
            assert born < date.fromisoformat(p["organ_donor_date"]) <= REFERENCE_DATE
        assert 1 <= len(p["affiliations"]) <= 2
        codes = [a["institution_code"] for a in p["affiliations"]]
        assert len(set(codes)) == len(codes)
        for a in p["affiliations"]:
            assert set(a) == AFFILIATION_KEYS
            assert a["institution_code"] in {2, 3, 4, 5, 6, 10}
            assert a["status"] == "active"
            assert a["valid_to"] is None
            assert born <= date.fromisoformat(a["valid_from"]) <= REFERENCE_DATE
            if a["institution_code"] == 2:
                assert re.fullmatch(r"\d{11}", a["member_number"])
                assert luhn_ok(a["member_number"])
                assert a["regime"] in {"ordinario", "voluntario", "facultativo"}


def test_places_exist_in_inegi(people: list[dict[str, Any]]) -> None:
    municipalities = {
        r["cve_entidad"] + r["cve_municipio"] for r in read_csv("inegi/municipios_inegi.csv")
    }
    localities = {
        r["cve_entidad"] + r["cve_municipio"] + r["cve_localidad"]
        for r in read_csv("inegi/localidades_inegi.csv")
    }
    for p in people:
        a = p["address"]
        assert a["state"] + a["municipality"] in municipalities
        if a["locality"] is not None:
            assert a["state"] + a["municipality"] + a["locality"] in localities
    assert 0.70 < share(people, lambda p: p["address"]["locality"] is not None) < 0.95


# --- CURPs -----------------------------------------------------------------------------------


def test_every_curp_validates_and_matches(people: list[dict[str, Any]]) -> None:
    for p in people:
        data = curp.parse(p["curp"])
        assert data.birth_date.isoformat() == p["birth_date"]
        assert data.sex == p["sex"]
        assert data.state == p["birth_state"]
        # Built from the person's own names, whatever the differentiator.
        assert p["curp"] == curp.generate(
            p["given_names"],
            p["first_surname"],
            p["second_surname"],
            data.birth_date,
            p["sex"],
            p["birth_state"],
            p["curp"][16],
        )


def test_curps_unique(people: list[dict[str, Any]]) -> None:
    assert len({p["curp"] for p in people}) == len(people)


def test_differentiators_vary(people: list[dict[str, Any]]) -> None:
    before_2000 = Counter(p["curp"][16] for p in people if p["birth_date"] < "2000")
    since_2000 = Counter(p["curp"][16] for p in people if p["birth_date"] >= "2000")
    assert set(before_2000) == set("0123456789")
    assert len(since_2000) > 20
    assert all(c.isalpha() for c in since_2000)


# --- distributions ---------------------------------------------------------------------------


def test_state_shares_follow_inegi(people: list[dict[str, Any]]) -> None:
    population: Counter[str] = Counter()
    for row in read_csv("inegi/municipios_inegi.csv"):
        population[row["cve_entidad"]] += int(row["poblacion_total"])
    total = sum(population.values())
    observed = Counter(p["address"]["state"] for p in people)
    assert set(observed) == set(population)
    for state, pop in population.items():
        expected = pop / total
        assert abs(observed[state] / N - expected) < 0.01, state
    # The State of Mexico (15) is the most populous.
    assert observed.most_common(1)[0][0] == "15"


def test_birth_state_mostly_residence(people: list[dict[str, Any]]) -> None:
    to_curp = {r["clave_inegi"]: r["code"] for r in read_csv("inegi/estados_curp_inegi.csv")}
    same = share(people, lambda p: to_curp[p["address"]["state"]] == p["birth_state"])
    assert 0.75 < same < 0.86
    assert 0.004 < share(people, lambda p: p["birth_state"] == "NE") < 0.02


def test_affiliation_shares(people: list[dict[str, Any]]) -> None:
    counts = Counter(a["institution_code"] for p in people for a in p["affiliations"])
    assert 0.42 < counts[2] / N < 0.48  # IMSS
    assert 0.065 < counts[3] / N < 0.095  # ISSSTE
    assert 0.003 < counts[4] / N < 0.010  # PEMEX
    assert 0.003 < counts[5] / N < 0.010  # SEDENA
    assert 0.001 < counts[6] / N < 0.006  # SEMAR
    assert 0.43 < counts[10] / N < 0.54  # IMSS-Bienestar
    assert 0.02 < share(people, lambda p: len(p["affiliations"]) == 2) < 0.04
    # IMSS-Bienestar is for people without social security: never combined.
    assert not any(
        len(p["affiliations"]) > 1 and 10 in {a["institution_code"] for a in p["affiliations"]}
        for p in people
    )


def test_blood_types(people: list[dict[str, Any]]) -> None:
    counts = Counter(p["blood_type"] for p in people)
    assert counts.most_common(1)[0][0] == "O+"
    assert 0.55 < counts["O+"] / N < 0.63
    assert counts["A+"] > counts["B+"] > counts["AB+"] > counts["AB-"]
    assert set(counts) == BLOOD_TYPES


def test_age_and_sex_pyramid(people: list[dict[str, Any]]) -> None:
    def age(p: dict[str, Any]) -> int:
        born = date.fromisoformat(p["birth_date"])
        before_birthday = (REFERENCE_DATE.month, REFERENCE_DATE.day) < (born.month, born.day)
        return REFERENCE_DATE.year - born.year - before_birthday

    ages = [age(p) for p in people]
    assert 0.20 < sum(a < 15 for a in ages) / N < 0.30
    assert 0.05 < sum(a >= 65 for a in ages) / N < 0.11
    assert max(ages) < 106
    women = share(people, lambda p: p["sex"] == "M")
    assert 0.50 < women < 0.53
    old = [p for p, a in zip(people, ages, strict=True) if a >= 65]
    assert share(old, lambda p: p["sex"] == "M") > women
    assert share(people, lambda p: p["sex"] == "X") < 0.003


def test_names(people: list[dict[str, Any]]) -> None:
    assert 0.20 < share(people, lambda p: " " in p["given_names"]) < 0.30
    assert 0.01 < share(people, lambda p: p["second_surname"] is None) < 0.035
    assert len({p["first_surname"] for p in people}) > 500


def test_donors_and_contact(people: list[dict[str, Any]]) -> None:
    donors = Counter(p["organ_donor"] for p in people)
    assert 0.08 < donors["yes"] / N < 0.12
    assert 0.035 < donors["no"] / N < 0.065
    assert 0.5 < share(people, lambda p: p["phone"] is not None) < 0.9
    assert 0.2 < share(people, lambda p: p["email"] is not None) < 0.6


# --- errors and CLI --------------------------------------------------------------------------


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="SALUD_SHARED_DATA_DIR"):
        list(generate_persons(1, 1, tmp_path))


def test_cli_stdout_is_only_data() -> None:
    result = CliRunner().invoke(app, ["persons", "--count", "30", "--seed", "9"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == ndjson(30, 9)


def test_cli_out_file(tmp_path: Path) -> None:
    target = tmp_path / "personas.ndjson"
    args = ["persons", "-n", "40", "-s", "9", "--out", str(target), "--data-dir", str(DATA)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == ndjson(40, 9)
