"""One Settings object, read from SALUD_* environment variables."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Public development values (see Settings.insecure_defaults).
MIN_SECRET_BYTES = 32
_DEV_TOKEN_SECRET = "desarrollo-no-usar-en-produccion-token-secret-0000"  # noqa: S105
_DEV_KEK = "ZGVzYXJyb2xsby1uby11c2FyLWVuLXByb2R1Y2Npb24="  # 32 bytes, base64
_DEV_AUDIT_KEY = "desarrollo-no-usar-en-produccion-audit-key-000000"

# The rule of kit.sealing.kek_id_problem (this module sits below kit and cannot import it):
# the id is written in every sealed value as ASCII, and listed in SALUD_OLD_KEKS as "id:...".
_KEK_ID = re.compile(r"[!-+\--9;-~]([ !-+\--9;-~]{0,253}[!-+\--9;-~])?")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    # FHIR bulk $export: each job's state (job.json) and its NDJSON files, one folder per job.
    export_dir: Path = PROJECT_ROOT / "var" / "exports"
    # A finished export's files (health data of many people) are removed this long after it
    # finished; one client may run this many exports at once (one more is 429).
    export_ttl_hours: int = Field(default=24, ge=1, le=720)
    export_max_running: int = Field(default=2, ge=1, le=50)
    # The progress dashboard reads a snapshot of its figures that the server takes every this
    # many seconds (counting the whole drive takes minutes at the national scale); 0: no
    # snapshots, every request counts (small databases, the tests).
    progress_refresh_seconds: int = Field(default=300, ge=0, le=86_400)

    # Secrets. The defaults exist only so that development starts with no set-up; they are
    # public (they are in this file), and production refuses to start with any of them.
    token_secret: SecretStr = SecretStr(_DEV_TOKEN_SECRET)
    token_ttl_seconds: int = 900
    # A page session is renewed while used, but ends this long after its sign-in.
    session_max_hours: float = Field(default=12.0, gt=0, le=24)
    # How often each process reads tokens signed out and accounts disabled (access/revocation).
    revocation_refresh_seconds: float = Field(default=5.0, ge=0.5, le=300)
    # Key-encryption key (base64, 32 bytes) for envelope encryption at rest; rotating it:
    # put the old one in old_keks as "id:base64,..." and run `salud keys rewrap`.
    kek_id: str = "dev"
    kek: SecretStr = SecretStr(_DEV_KEK)
    old_keks: SecretStr = SecretStr("")
    # HMAC key of the audit chain: whoever can write the database but not read this key
    # cannot rewrite the chain so that it verifies.
    audit_key: SecretStr = SecretStr(_DEV_AUDIT_KEY)
    # Group commit: how long the audit writer may wait after the first pending entry for
    # others to share its transaction (each answer waits for its entry to be durable).
    audit_group_commit_ms: float = Field(default=0.0, ge=0, le=50)
    # The credential (issue 4): `iss` of every card, the base of the short links printed on
    # the card's back, how long a plastic card and a digital card's entitlement statement
    # are valid, and whether the signed QR carries a small face image (a bigger QR).
    credential_issuer: str = "https://salud.gob.mx/credencial"
    public_base_url: str = "http://127.0.0.1:8000"
    credential_validity_years: int = Field(default=10, ge=1, le=20)
    digital_statement_hours: int = Field(default=12, ge=1, le=72)
    credential_qr_face: bool = False
    # Bookings made without signing in (only a CURP), per client address and minute.
    public_booking_per_minute: int = Field(default=30, ge=1, le=10_000)
    # Citizens sign in through the government's identity provider (OpenID Connect,
    # authorization code + PKCE). Unset issuer: citizen sign-in is off.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_uri: str | None = None
    oidc_curp_claim: str = "curp"
    # Staff sign-in: failures before a lockout, and its length.
    max_failed_logins: int = 5
    lockout_seconds: int = 900

    @field_validator("log_level")
    @classmethod
    def _log_level_is_known(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"«{value}» no es un nivel: use {', '.join(_LOG_LEVELS)}")
        return value.upper()

    @field_validator("kek_id")
    @classmethod
    def _kek_id_is_valid(cls, value: str) -> str:
        if not _KEK_ID.fullmatch(value):
            raise ValueError(
                f"«{value}» no es válido: de 1 a 255 caracteres ASCII imprimibles, sin ',' "
                "ni ':' ni espacios al principio o al final"
            )
        return value

    @property
    def progress_snapshots(self) -> bool:
        """Whether the server counts the dashboard in the background (requests then read the
        latest snapshot) or every request counts."""
        return self.progress_refresh_seconds > 0

    @property
    def session_max_seconds(self) -> int:
        """How long a page session may last after its sign-in, renewals included."""
        return int(self.session_max_hours * 3600)

    def secure_cookies(self, scheme: str) -> bool:
        """Whether cookies carry `Secure`: always in production (behind a proxy that ends TLS
        the request may arrive as http), and on https anywhere."""
        return scheme == "https" or self.environment == "production"

    def insecure_defaults(self) -> list[str]:
        """Names of the secrets production cannot start with: still at (or copied from) their
        public development value, or shorter than 32 bytes. The token secret signs every
        bearer token and CSRF token with HMAC-SHA256, and the audit key chains the log: a
        short one is guessed offline from a single token or entry."""
        found = []
        for name, value, default in (
            ("SALUD_TOKEN_SECRET", self.token_secret, _DEV_TOKEN_SECRET),
            ("SALUD_KEK", self.kek, _DEV_KEK),
            ("SALUD_AUDIT_KEY", self.audit_key, _DEV_AUDIT_KEY),
        ):
            secret = value.get_secret_value()
            if secret == default or "no-usar-en-produccion" in secret:
                found.append(name)
            elif name != "SALUD_KEK" and len(secret.encode()) < MIN_SECRET_BYTES:
                found.append(f"{name} (al menos {MIN_SECRET_BYTES} bytes aleatorios)")
        return found


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
