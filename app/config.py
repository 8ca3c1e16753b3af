"""Settings, read once from the environment (``DATABASE_URL`` and ``CHILDLINK_*``)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MAX_TOKEN_LIFETIME_SECONDS = 900
"""Tokens live at most 15 minutes: short enough that a leaked token ages out quickly."""

DEV_ISSUER = "http://localhost:8000"


class Environment(StrEnum):
    development = "development"
    production = "production"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """All configuration. Unsafe development defaults are refused in production."""

    model_config = SettingsConfigDict(env_prefix="CHILDLINK_", extra="ignore")

    env: Environment = Environment.development
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Path(".childlink")
    """Holds the embedded PostgreSQL data folder (``pgdata``) and, in development, the keys."""
    pgdata: Path | None = None
    key_dir: Path | None = None
    issuer: str = DEV_ISSUER
    audience: str = "childlink"
    token_lifetime_seconds: int = Field(default=600, ge=60, le=MAX_TOKEN_LIFETIME_SECONDS)
    clock_leeway_seconds: int = Field(default=30, ge=0, le=60)
    client_status_ttl_seconds: float = Field(default=2.0, ge=0, le=5)
    """How long a worker trusts its cached view of a client's status; revocation lag is bounded by it."""
    trusted_issuers: Annotated[list[str], NoDecode] = []
    """External issuers as ``issuer|jwks_url`` pairs, comma-separated."""
    cors_origins: Annotated[list[AnyHttpUrl], NoDecode] = []
    db_pool_size: int = Field(default=20, ge=1, le=200)
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = Field(default=32 * 1024, ge=4096, le=1024 * 1024)
    """A request's head (request line and headers) in bytes; more is refused with 431."""
    max_header_line_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    """One header line (name and value) in bytes; a longer one is refused with 431."""
    docs: bool = True
    """Serve the interactive docs (``/docs``, ``/redoc`` and their assets). ``/openapi.json``, the
    contract integrators build against, is served either way."""
    metrics_token: SecretStr | None = None
    """A bearer token that ``/metrics`` accepts besides an ``admin`` token (for a Prometheus
    scraper that holds no client). In production ``/metrics`` is never open: it wants one or the
    other; in development it is open unless this is set."""
    log_level: str = "INFO"
    otel: bool = False
    """FastAPI's native OpenTelemetry spans and metrics, for a deployment that configures an
    OpenTelemetry SDK (spans carry request paths: child ids, never names or ID numbers; FastAPI's
    log export, which would carry exception messages, stays off). Off by default: the service's
    own metrics are at ``/metrics``, and looking for a configured SDK costs every request a few
    microseconds even when there is none."""
    token_failures_per_minute: int = Field(default=20, ge=1)
    break_glass_daily_limit: int = Field(default=5, ge=0, le=1000)
    """Break-glass reads one client may make in 24 hours before further uses are refused (429)."""

    run_worker: bool | None = None
    """Run the webhook delivery worker inside each app process. Unset: only on the embedded
    database (``serve`` with no ``DATABASE_URL``); production runs ``childlink worker`` instead."""
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = []
    """Hosts and CIDRs a webhook may reach although they are not global addresses (loopback, a
    private network), comma-separated. Empty by default: webhooks go to public addresses only."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    """A receiver must answer within this long, connection included."""
    webhook_retry_schedule: Annotated[list[float], NoDecode] = [5, 300, 1800, 7200, 18000, 36000, 36000]
    """Seconds to wait before each retry, comma-separated; after the last, a delivery is dead-lettered."""
    webhook_retry_jitter: float = Field(default=0.2, ge=0, le=1)
    """Each wait is spread by up to this fraction either way, so failed receivers are not hit in step."""
    webhook_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How long a worker owns a claimed delivery; a worker that dies mid-delivery is replaced after it."""
    webhook_secret_overlap_seconds: int = Field(default=86400, ge=0, le=30 * 86400)
    """After a secret rotation, deliveries carry the old secret's signature too for this long."""
    worker_concurrency: int = Field(default=16, ge=1, le=256)
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    feed_max_wait_seconds: int = Field(default=30, ge=0, le=60)

    _split = field_validator("trusted_issuers", "cors_origins", mode="before")(_split_csv)
    _split_events = field_validator("webhook_allowed_hosts", "webhook_retry_schedule", mode="before")(
        _split_csv
    )

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("the retry schedule is a non-empty list of non-negative seconds")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_timeout(self) -> Settings:
        # A lease shorter than a delivery would let a second worker re-send while the first is
        # still waiting for the receiver's answer.
        if self.webhook_lease_seconds < self.webhook_timeout_seconds + 1:
            raise ValueError("CHILDLINK_WEBHOOK_LEASE_SECONDS must exceed the webhook timeout by a second")
        return self

    @field_validator("trusted_issuers")
    @classmethod
    def _issuer_pairs(cls, value: list[str]) -> list[str]:
        for item in value:
            issuer, sep, jwks_url = item.partition("|")
            if not sep or not issuer or not jwks_url.startswith(("https://", "http://")):
                raise ValueError("each trusted issuer must be 'issuer|https://jwks-url'")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env is Environment.production:
            problems = []
            if not self.database_url:
                problems.append("DATABASE_URL must be set (no embedded database in production)")
            if self.key_dir is None:
                problems.append("CHILDLINK_KEY_DIR must name the signing-key folder")
            if self.issuer == DEV_ISSUER or not self.issuer.startswith("https://"):
                problems.append("CHILDLINK_ISSUER must be the service's https URL")
            if self.metrics_token is not None and len(self.metrics_token.get_secret_value()) < 32:
                problems.append("CHILDLINK_METRICS_TOKEN must be at least 32 characters")
            for item in self.trusted_issuers:
                if not item.partition("|")[2].startswith("https://"):
                    problems.append("trusted issuer JWKS URLs must use https")
            if problems:
                raise ValueError("; ".join(problems))
        return self

    @property
    def is_development(self) -> bool:
        return self.env is Environment.development

    @property
    def resolved_pgdata(self) -> Path:
        return (self.pgdata or self.data_dir / "pgdata").resolve()

    @property
    def resolved_key_dir(self) -> Path:
        return (self.key_dir or self.data_dir / "keys").resolve()

    @property
    def external_issuers(self) -> dict[str, str]:
        return dict(item.split("|", 1) for item in self.trusted_issuers)


@lru_cache
def get_settings() -> Settings:
    return Settings()
