"""What the catalog API answers: units, pages, history and nearest units."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Hours(BaseModel):
    days: list[bool] | None = Field(
        None, description="Días de servicio, de lunes a domingo; null si el catálogo no los da"
    )
    open: str | None = Field(None, description="Hora de apertura (HH:MM, hora local)")
    close: str | None = Field(
        None,
        description="Hora de cierre (HH:MM); antes de la apertura si cierra pasada la medianoche",
    )
    blocks: int | None = Field(None, description="Bloques de horario por día según la DGIS")


class HealthUnitRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    clues: str = Field(description="Clave Única de Establecimientos de Salud")
    name: str = Field(description="Nombre de la unidad")
    institution_code: str = Field(
        description="Clave de la institución en la CLUES (IMB, IMS, IST, SSA...)"
    )
    institution: str = Field(description="Nombre de la institución")
    state_code: str = Field(description="Estado (letras de la CLUES y la CURP: HG, DF...)")
    state_key: str | None = Field(None, description="Clave INEGI del estado")
    municipality_key: str | None = Field(None, description="Clave INEGI del municipio")
    municipality_name: str | None = None
    locality_key: str | None = Field(None, description="Clave INEGI de la localidad")
    locality_name: str | None = None
    unit_type: str | None = Field(None, description="Tipo de establecimiento")
    typology: str | None = Field(None, description="Tipología")
    level_of_care: int | None = Field(None, description="Nivel de atención: 1, 2 o 3")
    status: str | None = Field(None, description="Estatus de operación según la fuente")
    in_operation: bool | None = Field(None, description="En operación; null si no se sabe")
    street: str | None = Field(None, description="Domicilio")
    postal_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_precision: str = Field(
        description="exact (de la fuente), locality o municipality (aproximada con INEGI), none"
    )
    location_note: str | None = Field(None, description="Aclaración sobre la ubicación")
    hours: Hours | None = Field(None, description="Horario según el catálogo CLUES")
    open_now: bool | None = Field(None, description="Abierta en este momento; null si no se sabe")
    previous_clues: str | None = Field(
        None,
        description="Clave anterior de la misma unidad (SSA o estatal antes de IMSS-Bienestar)",
    )
    replaced_by: str | None = Field(
        None, description="La unidad pasó a esta otra clave: es la misma unidad, vigente con ella"
    )
    source: str = Field(description="Archivo del último cambio")
    version: int
    updated_at: datetime


class HealthUnitPage(BaseModel):
    items: list[HealthUnitRead]
    total: int = Field(description="Unidades que cumplen los filtros")
    limit: int
    offset: int


class HealthUnitVersionRead(BaseModel):
    version: int = Field(description="Versión que tenían estos valores")
    source: str = Field(description="Archivo del que venían estos valores")
    recorded_at: datetime = Field(description="Cuándo fueron reemplazados")
    values: dict[str, Any] = Field(description="Valores de la unidad en esa versión")


class HealthUnitHistory(BaseModel):
    clues: str
    current: HealthUnitRead
    versions: list[HealthUnitVersionRead] = Field(
        description="Versiones anteriores, la más reciente primero"
    )


class NearestUnit(BaseModel):
    clues: str
    name: str
    institution_code: str
    institution: str
    level_of_care: int | None
    distance_km: float = Field(description="Distancia en línea recta (círculo máximo), en km")
    latitude: float
    longitude: float
    location_precision: str
    open_now: bool | None = Field(None, description="Abierta ahora; null si el catálogo no lo dice")


class NearestResults(BaseModel):
    latitude: float
    longitude: float
    items: list[NearestUnit]
