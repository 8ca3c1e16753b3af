"""Settings, read once from the environment (``DATABASE_URL`` and ``CHILDLINK_*``)."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.auth.scopes import PRIVILEGED_SCOPES, Scope

MAX_TOKEN_LIFETIME_SECONDS = 900
"""Tokens live at most 15 minutes: short enough that a leaked token ages out quickly."""

DEV_ISSUER = "http://localhost:8000"


class Environment(StrEnum):
    development = "development"
    production = "production"


class DatabasePooler(StrEnum):
    """What sits between the service and PostgreSQL on ``DATABASE_URL``."""

    none = "none"
    """PostgreSQL itself, or a pooler in session mode: a connection is one server session."""
    transaction = "transaction"
    """A pooler in transaction mode (PgBouncer's ``pool_mode = transaction``): each transaction
    may run on another server connection, so nothing may rely on a session's state."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class TrustedIssuer(BaseModel):
    """An external identity provider, and what its tokens may say.

    A token from it is accepted only inside this trust: an agency it may assert, scopes it may
    grant, and a region under its prefix. ``admin`` and ``audit:read`` are refused here unless
    ``allow_privileged`` is also set, so that listing them by accident is not enough.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1, max_length=500)
    """The ``iss`` its tokens carry."""
    jwks_url: str = Field(pattern=r"^https?://", max_length=2000)
    agencies: frozenset[str] = Field(min_length=1)
    """Agency codes its tokens may name in ``agency``."""
    scopes: frozenset[Scope] = Field(min_length=1)
    """Scopes its tokens may grant; a token claiming another known scope is refused."""
    region: str = Field(pattern=r"^\d{0,12}$")
    """The division-code prefix its tokens' ``region`` must stay under; ``""`` is the whole country."""
    allow_privileged: bool = False
    """Required as well as listing ``admin`` or ``audit:read``, and to assert a platform agency."""

    @field_validator("agencies")
    @classmethod
    def _agency_codes(cls, value: frozenset[str]) -> frozenset[str]:
        bad = sorted(code for code in value if not _AGENCY_CODE.match(code))
        if bad:
            raise ValueError("not agency codes: " + ", ".join(bad))
        return value

    @model_validator(mode="after")
    def _privileged_is_explicit(self) -> TrustedIssuer:
        privileged = sorted(str(s) for s in self.scopes & PRIVILEGED_SCOPES)
        if privileged and not self.allow_privileged:
            raise ValueError(
                f"trusted issuer {self.issuer} lists {', '.join(privileged)}: an external issuer grants "
                'these only with "allow_privileged": true as well'
            )
        return self


_AGENCY_CODE = re.compile(r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$")
_ISSUERS = TypeAdapter(list[TrustedIssuer])
_ISSUERS_FORMAT = (
    'a JSON list of {"issuer", "jwks_url", "agencies", "scopes", "region"[, "allow_privileged"]} objects'
)


def _parse_issuers(value: object, source: str) -> list[TrustedIssuer]:
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(
                f"{source} must be {_ISSUERS_FORMAT}; the older 'issuer|jwks_url' form is no longer "
                "accepted, because each issuer must say what it is trusted with"
            ) from None
    try:
        return _ISSUERS.validate_python(value)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(part) for part in error["loc"]) + ": " + error["msg"] for error in exc.errors()
        )
        raise ValueError(f"{source} is not {_ISSUERS_FORMAT}: {problems}") from None


class Settings(BaseSettings):
    """All configuration. Unsafe development defaults are refused in production."""

    model_config = SettingsConfigDict(env_prefix="CHILDLINK_", extra="ignore")

    env: Environment = Environment.development
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    """The service's connection: in production a restricted role (see ``childlink db roles``)."""
    database_pooler: DatabasePooler = DatabasePooler.none
    """``transaction`` when ``DATABASE_URL`` reaches PostgreSQL through a transaction-mode pooler:
    the service then prepares no named statements and sets nothing per session, and sends what
    needs a session of its own to ``CHILDLINK_DATABASE_DIRECT_URL``."""
    database_direct_url: str | None = None
    """The service's role straight to PostgreSQL (past any pooler), for what a transaction-mode
    pooler cannot carry: the commit notifier's ``LISTEN`` (the feed's long poll and the workers'
    wake-up) and the operator commands. Unset: ``DATABASE_URL``; behind a transaction-mode pooler
    nothing listens then, and waiters poll instead (the feed every half second, workers every
    ``CHILDLINK_WORKER_POLL_SECONDS``)."""
    migration_database_url: str | None = None
    """The schema owner's connection, used by ``childlink migrate`` (and the migrate step of
    ``serve`` and ``worker``); unset: ``DATABASE_URL``, as on the embedded server."""
    db_admin_url: str | None = None
    """A superuser (or CREATEROLE) connection, used only by ``childlink db roles``."""
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
    trusted_issuers: Annotated[list[TrustedIssuer], NoDecode] = []
    """External issuers and what each is trusted with, as JSON (see :class:`TrustedIssuer`)."""
    trusted_issuers_file: Path | None = None
    """A JSON file holding the same list instead; set one of the two."""
    jwks_fetch_deadline_seconds: float = Field(default=5.0, gt=0, le=30)
    """An external issuer's JWKS must arrive whole within this long, or the fetch is abandoned."""
    cors_origins: Annotated[list[AnyHttpUrl], NoDecode] = []
    db_pool_size: int = Field(default=20, ge=1, le=200)
    audit_checkpoint_seconds: float = Field(default=300.0, ge=1, le=86_400)
    """How often the sealer signs the access-log chain head (``GET /v1/audit/checkpoints``)."""
    audit_retention_days: int = Field(default=1096, ge=1095, le=36_500)
    """How long the access log's monthly partitions stay in the live log (at least three years);
    older ones are exported to signed archives and detached by ``childlink audit export``."""
    delivery_attempt_retention_days: int = Field(default=1096, ge=31, le=36_500)
    """How long webhook delivery attempts (the attempt log of ``GET /v1/subscriptions/{id}/deliveries``)
    are kept: the worker drops each monthly partition of ``delivery_attempt`` whose month ended
    longer ago. The reads the deliveries made stay on the access log, under its own retention."""
    audit_archive_dir: Path = Path("audit-archive")
    """Where ``childlink audit export`` writes archives unless given ``--out``."""
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
    token_failures_per_source: int = Field(default=10, ge=1, le=1000)
    """Failed secrets one source may try for one client before exponential back-off (per worker)."""
    token_failures_per_client: int = Field(default=100, ge=1, le=100_000)
    """Failed secrets for one client, from all sources, in an hour before every source failing
    for it backs off after its first failure (per worker)."""
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = []
    """Proxies (addresses or CIDRs, comma-separated) whose ``X-Forwarded-For`` names the source
    address the token endpoint's limiter counts; empty: the connection's peer is the source."""
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
    webhook_subscription_share: float = Field(default=0.25, gt=0, le=1)
    """The fraction of a worker's slots (``worker_concurrency``) one subscription may hold at once
    (at least one): a receiver that hangs ties up its share, never every slot."""
    webhook_max_secrets: int = Field(default=5, ge=2, le=20)
    """Signing secrets valid at once (the current one and those still in their rotation overlap);
    a rotation beyond it is refused until the oldest overlap ends."""
    webhook_disable_after_failing_seconds: float = Field(default=5 * 86400, ge=0)
    """A subscription whose every attempt has failed for this long is disabled and told so (0: never)."""
    worker_concurrency: int = Field(default=16, ge=1, le=256)
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    feed_max_wait_seconds: int = Field(default=30, ge=0, le=60)

    _split = field_validator("cors_origins", "trusted_proxies", mode="before")(_split_csv)
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

    @model_validator(mode="after")
    def _pooler_needs_a_url(self) -> Settings:
        if self.transaction_pooled and not self.database_url:
            raise ValueError("CHILDLINK_DATABASE_POOLER=transaction needs DATABASE_URL, the pooler's address")
        return self

    @field_validator("trusted_issuers", mode="before")
    @classmethod
    def _issuers_from_json(cls, value: object) -> object:
        return _parse_issuers(value, "CHILDLINK_TRUSTED_ISSUERS")

    @model_validator(mode="after")
    def _issuers_from_file(self) -> Settings:
        if self.trusted_issuers_file is not None:
            if self.trusted_issuers:
                raise ValueError("set CHILDLINK_TRUSTED_ISSUERS or CHILDLINK_TRUSTED_ISSUERS_FILE, not both")
            source = f"CHILDLINK_TRUSTED_ISSUERS_FILE ({self.trusted_issuers_file})"
            try:
                text = self.trusted_issuers_file.read_text(encoding="utf-8")
            except (OSError, UnicodeError) as exc:
                raise ValueError(f"{source} cannot be read: {type(exc).__name__}") from None
            self.trusted_issuers = _parse_issuers(text or "[]", source)
        issuers = [item.issuer for item in self.trusted_issuers]
        if len(set(issuers)) != len(issuers):
            raise ValueError("each trusted issuer may be configured once")
        if self.issuer in issuers:
            raise ValueError("CHILDLINK_ISSUER cannot also be a trusted external issuer")
        return self

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
            if any(not item.jwks_url.startswith("https://") for item in self.trusted_issuers):
                problems.append("trusted issuer JWKS URLs must use https")
            if self.metrics_token is not None and len(self.metrics_token.get_secret_value()) < 32:
                problems.append("CHILDLINK_METRICS_TOKEN must be at least 32 characters")
            if problems:
                raise ValueError("; ".join(problems))
        return self

    @property
    def transaction_pooled(self) -> bool:
        return self.database_pooler is DatabasePooler.transaction

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
    def external_issuers(self) -> dict[str, TrustedIssuer]:
        return {item.issuer: item for item in self.trusted_issuers}


@lru_cache
def get_settings() -> Settings:
    return Settings()
