"""Tables of the health-unit catalog (CLUES), with the history of every changed unit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from salud.storage.base import Base, BigId, Json, UTCDateTime


class HealthUnit(Base):
    __tablename__ = "health_units"
    __table_args__ = (Index("ix_health_units_state_institution", "state_code", "institution_code"),)

    clues: Mapped[str] = mapped_column(String(11), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    # Folded form of the name (no accents, uppercase) for search; derived, never shown.
    name_key: Mapped[str] = mapped_column(String(300))
    institution_code: Mapped[str] = mapped_column(String(5))
    institution_name: Mapped[str | None] = mapped_column(String(200))
    state_code: Mapped[str] = mapped_column(String(2))  # CLUES/CURP letters: HG, DF, ...
    state_key: Mapped[str | None] = mapped_column(String(2))  # INEGI: 13, 09, ...
    municipality_key: Mapped[str | None] = mapped_column(String(3))
    municipality_name: Mapped[str | None] = mapped_column(String(150))
    locality_key: Mapped[str | None] = mapped_column(String(4))
    locality_name: Mapped[str | None] = mapped_column(String(200))
    unit_type: Mapped[str | None] = mapped_column(String(120))
    typology: Mapped[str | None] = mapped_column(String(150))
    level_of_care: Mapped[int | None] = mapped_column(SmallInteger)
    status: Mapped[str | None] = mapped_column(String(60))
    in_operation: Mapped[bool | None] = mapped_column(Boolean)
    street: Mapped[str | None] = mapped_column(String(300))
    postal_code: Mapped[str | None] = mapped_column(String(5))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # exact (from the source) | locality | municipality (placed by INEGI) | none
    location_precision: Mapped[str] = mapped_column(String(12))
    location_note: Mapped[str | None] = mapped_column(Text)
    # {"days": [Mon..Sun] or null, "open": "HH:MM", "close": "HH:MM", "blocks": n}
    hours: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # The key this unit had before (an SSA or state unit that passed to IMSS-Bienestar keeps
    # its old key in the CLUES as `clues_ssa_y_sme`): that unit is this one, not another.
    previous_clues: Mapped[str | None] = mapped_column(String(11), index=True)
    source: Mapped[str] = mapped_column(String(80))
    # Month ("YYYY-MM") of the source data behind each field, so that importing an older
    # release never overwrites what a newer one said: {"name": "2026-06", "hours": ...}.
    field_dates: Mapped[dict[str, str] | None] = mapped_column(Json)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HealthUnitVersion(Base):
    """The values a unit had before an import changed them."""

    __tablename__ = "health_unit_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    clues: Mapped[str] = mapped_column(String(11), index=True)
    version: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(Json)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(80))
