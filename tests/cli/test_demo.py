"""`make run`'s demo data on a fresh SQLite database: the real catalog, synthetic persons
(each registration audited), cards, citizen accounts, and a parent who answers for a minor;
the audit chain verifies afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _salud(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salud.cli.main", *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_the_demo_loads_and_its_audit_log_verifies(tmp_path: Path) -> None:
    env = {**os.environ, "SALUD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
           "COLUMNS": "200"}  # fmt: skip
    assert _salud("db", "upgrade", env=env).returncode == 0
    loaded = _salud("demo", "load", "--persons", "60", env=env)
    assert loaded.returncode == 0, loaded.stderr
    said = " ".join(loaded.stderr.split())
    assert "60 personas registradas" in said
    parent = re.search(r"(persona\d\.demo) responde por la menor o el menor ([A-Z0-9]{18})", said)
    assert parent, said
    verified = _salud("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "íntegra" in " ".join((verified.stdout + verified.stderr).split())
