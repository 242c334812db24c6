"""One Settings object, read from SALUD_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALUD_", env_file=None, extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    # SQLite under var/ is the embedded default; PostgreSQL is production:
    # postgresql+asyncpg://user@host:5432/dbname
    database_url: str = Field(default=f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'salud.db'}")
    # Where the real catalogs live (../shared/data beside the project); importers take paths.
    shared_data_dir: Path = PROJECT_ROOT.parent / "shared" / "data"
    log_level: str = "INFO"
    log_json: bool = False
    # Longest page a search may return.
    max_page_size: int = 200


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
