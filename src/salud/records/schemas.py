"""Pydantic shapes of the record's non-FHIR API (the person's restrictions)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["mental_health", "sexual_reproductive", "hiv"]


class Restrictions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: list[Category] = Field(
        max_length=3,
        description="Categorías visibles solo para la institución que registró cada dato",
    )
