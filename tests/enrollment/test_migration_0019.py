"""Migration 0019 moves each enrollment's one recorded exception into the list that now keeps
them all, gives an enrollment under way the photo version it counted, and closes the reviews
a cancelled enrollment left pending."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from salud.storage.migrate import upgrade


def _insert(conn: sqlite3.Connection, table: str, **values: object) -> None:
    """A row with the given values, every other NOT NULL column filled by its type."""
    filler = {"INTEGER": 1, "BIGINT": 1, "SMALLINT": 1, "BOOLEAN": 0, "DATE": "2026-01-02",
              "DATETIME": "2026-01-02 10:00:00.000000", "JSON": "[]"}  # fmt: skip
    row = dict(values)
    for _, name, kind, notnull, _, pk in conn.execute(f"PRAGMA table_info({table})"):
        if notnull and not pk and name not in row:
            row[name] = filler.get(kind.split("(")[0].upper(), "x")
    marks = ", ".join("?" for _ in row)
    conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def test_0019_keeps_the_recorded_exception_and_the_photo_counted(tmp_path: Path) -> None:
    db = tmp_path / "antes.db"
    url = f"sqlite+aiosqlite:///{db}"
    upgrade(url, "0018")
    with sqlite3.connect(db) as conn:
        _insert(conn, "registration_modules", code="MR-13-0001", status="open")
        _insert(conn, "enrollments", id=1, folio="R1", person_curp="AAAA800101HDFXXX01",
                status="open", waived='["address_proof","fingerprints"]',
                exception_reason="vive en albergue", exception_by="supervisora",
                exception_at="2026-03-04 15:30:00.000000",
                started_at="2026-03-04 10:00:00.000000")  # fmt: skip
        _insert(conn, "enrollments", id=2, folio="R2", person_curp="BBBB800101HDFXXX02",
                status="cancelled", started_at="2026-03-04 10:00:00.000000")  # fmt: skip
        _insert(conn, "person_photos", person_curp="AAAA800101HDFXXX01", version=3,
                updated_at="2026-03-04 11:00:00.000000")  # fmt: skip
        _insert(conn, "person_photos", person_curp="BBBB800101HDFXXX02", version=1,
                updated_at="2026-03-01 11:00:00.000000")  # fmt: skip
        _insert(conn, "duplicate_reviews", enrollment_id=2, status="pending",
                person_curp="BBBB800101HDFXXX02", candidate_curp="CCCC800101HDFXXX03")  # fmt: skip
    upgrade(url, "head")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT folio, exceptions, photo_version FROM enrollments ORDER BY id"
        ).fetchall()
        reviews = conn.execute("SELECT status FROM duplicate_reviews").fetchall()
        columns = {r[1] for r in conn.execute("PRAGMA table_info(enrollments)")}
    (first, exceptions, photo), (second, none, older) = rows
    assert (first, second) == ("R1", "R2")
    assert json.loads(exceptions) == [{
        "by": "supervisora", "at": "2026-03-04T15:30:00+00:00", "reason": "vive en albergue",
        "waived": ["address_proof", "fingerprints"],
    }]  # fmt: skip
    assert photo == 3  # taken after the enrollment started: it counted, and still does
    assert (json.loads(none), older) == ([], None)  # taken before: it never counted
    assert reviews == [("cancelled",)]
    assert not columns & {"exception_reason", "exception_by", "exception_at"}
