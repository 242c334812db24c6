"""Tables of the FHIR store: the current version of each resource, every earlier version,
and search-index rows. The person (CURP) is the natural partition key: every clinical
resource carries the CURP of its patient, and every index leads with it where it matters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from salud.storage.base import PARTITION_KEY_LENGTH, Base, BigId, UTCDateTime


class _Version:
    """The columns of one version of a resource, current or earlier."""

    resource_type: Mapped[str] = mapped_column(String(40))
    fhir_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean)
    # The record's partition key: a CURP, or the id of a Patient kept outside the registry.
    person_curp: Mapped[str | None] = mapped_column(String(PARTITION_KEY_LENGTH))
    institution_code: Mapped[int | None] = mapped_column(SmallInteger)
    clues: Mapped[str | None] = mapped_column(String(11))
    author: Mapped[str] = mapped_column(String(100))
    # Sensitive categories (records/sensitivity.py), comma-separated; "" for most resources.
    sensitivity: Mapped[str] = mapped_column(String(60))
    content: Mapped[str] = mapped_column(Text)  # the JSON as served (meta included)


class FhirResource(_Version, Base):
    """The current version of a resource (a deleted one keeps its row, `deleted` set)."""

    __tablename__ = "fhir_resources"
    __table_args__ = (
        UniqueConstraint("resource_type", "fhir_id", name="uq_fhir_resources_type_id"),
        Index("ix_fhir_resources_person_type", "person_curp", "resource_type"),
        Index("ix_fhir_resources_type_updated", "resource_type", "last_updated"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)


class FhirResourceVersion(_Version, Base):
    """An earlier version, frozen when it was replaced or deleted (never edited)."""

    __tablename__ = "fhir_resource_versions"
    __table_args__ = (
        UniqueConstraint(
            "resource_type", "fhir_id", "version_id", name="uq_fhir_resource_versions_tiv"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)


class RecordRestriction(Base):
    """A person's decision: this sensitive category of their record is visible only to the
    institution that recorded each entry (and to the person)."""

    __tablename__ = "record_restrictions"
    __table_args__ = (
        UniqueConstraint("person_curp", "category", name="uq_record_restrictions_pc"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_curp: Mapped[str] = mapped_column(String(18))
    category: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))


# The index tables hold derived rows, written only by the repository in the same transaction
# as their resource (and rebuilt from it): no surrogate key and no foreign key, which would
# cost a sequence, a third B-tree and a trigger lookup per row on every write (they were a
# large part of ingest time). The ORM needs an identity, so each mapper names one; the
# database has none. `tests/records/test_index_rows.py` checks nothing is ever orphaned.


def _identity(*columns: str) -> dict[str, Any]:
    return {"primary_key": list(columns)}


class FhirToken(Base):
    """A token search value (code, status, category, identifier) of a current resource."""

    __tablename__ = "fhir_tokens"
    __table_args__ = (Index("ix_fhir_tokens_param_code", "param", "code", "resource_pk"),)

    resource_pk: Mapped[int] = mapped_column(BigId, index=True)
    param: Mapped[str] = mapped_column(String(40))
    system: Mapped[str | None] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(200))
    __mapper_args__ = _identity("resource_pk", "param", "code")


class FhirReference(Base):
    """A reference search value (patient, subject, …): "Type/id"."""

    __tablename__ = "fhir_references"
    __table_args__ = (Index("ix_fhir_references_param_target", "param", "target", "resource_pk"),)

    resource_pk: Mapped[int] = mapped_column(BigId, index=True)
    param: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(120))
    __mapper_args__ = _identity("resource_pk", "param", "target")


class FhirDate(Base):
    """A date search value as a closed interval [start, end] in UTC."""

    __tablename__ = "fhir_dates"
    __table_args__ = (Index("ix_fhir_dates_param_start", "param", "start", "resource_pk"),)

    resource_pk: Mapped[int] = mapped_column(BigId, index=True)
    param: Mapped[str] = mapped_column(String(40))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    __mapper_args__ = _identity("resource_pk", "param", "start")
