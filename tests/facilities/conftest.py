"""Fixtures of the catalog tests: the INEGI gazetteer and the real CLUES files."""

from __future__ import annotations

from pathlib import Path

import pytest

from salud.facilities.gazetteer import Gazetteer


@pytest.fixture(scope="session")
def gazetteer(shared_data: Path) -> Gazetteer:
    return Gazetteer.load(shared_data / "inegi")


@pytest.fixture(scope="session")
def clues_dir(shared_data: Path) -> Path:
    return shared_data / "clues"
