"""The application factory. Nothing connects at import time; the lifespan opens the database
and loads the signing keys."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.access.deps import AgencyKinds
from app.access.door import Door, consent_lookup
from app.access.policy import load_policy
from app.audit import start_audit, stop_audit
from app.auth.clients import ClientDirectory
from app.auth.keys import KeyRing
from app.auth.limiter import FailureLimiter
from app.auth.tokens import TokenVerifier
from app.config import Settings, get_settings
from app.db import asyncpg_dsn, create_database, listen_dsn, resolve_database_url
from app.db_roles import enforce_least_privilege
from app.direct import DirectRoutes
from app.docs import install_docs
from app.errors import install_database_error_handlers, install_error_handlers
from app.events.lifecycle import start_events, stop_events
from app.events.openapi import install_webhooks
from app.observability import Metrics, RequestContextMiddleware, configure_logging
from app.openapi_docs import install_openapi_docs, operation_id
from app.routers import (
    access_report,
    audit,
    break_glass,
    cases,
    children,
    consents,
    consultations,
    due,
    guardianship,
    identity,
    oauth,
    ops,
    policy,
    referrals,
    reports,
    statistics,
    timeline,
)
from app.routers import deliveries as deliveries_router
from app.routers import events as events_router
from app.routers import subscriptions as subscriptions_router
from app.services import guardianship as guardianship_service

DESCRIPTION = """
**中文对接指南** (integration guide in Chinese):
[integration-guide.zh-CN.md](/docs/integration-guide.zh-CN.md): tokens, purposes of use, the
custody check, events, webhook signatures, error codes.

ChildLink (儿童关爱保护信息共享平台) lets civil affairs, education, health, police and the
women's federation share what each knows about left-behind (留守) and at-risk (困境) children,
in time and only as far as the law and the guardian's consent allow.

**Getting a token.** Each agency system is an API client. Exchange its id and secret at
`POST /oauth/token` (OAuth 2.0 client credentials) for a JWT of at most 15 minutes, then send
`Authorization: Bearer <token>`. In this page, press **Authorize**, enter the client id and
secret under *OAuth2ClientCredentials*, leave the scopes unticked (the token then carries every
scope the client holds), and every "Try it out" carries the token. Each operation's pre-filled
example works on the demo data of `./scripts/serve`; its summary names the demo client to use.

```
curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials \\
     http://localhost:8000/oauth/token
```

**Errors** are RFC 9457 `application/problem+json` with a stable `code` and the `request_id`
that is also in the `X-Request-ID` header; quote it when reporting a problem.

**Every read of child data is decided and logged.** Send `X-Purpose-Of-Use` (e.g.
`child_protection`) on every read of another agency's record. Each data category is released on
one of three grounds, in order: a **statute** in the access policy (`GET /v1/policy`; e.g. police
read custody for child protection), an active **guardian consent** (e.g. the guardian lets the
women's federation see health data), or an emergency **break-glass** (`X-Break-Glass:
missing_child; <justification>`, flagged and reviewed). What no ground covers is withheld and
listed under `access.withheld`. Every cross-agency read and every refusal is written to a
tamper-evident access log before the answer leaves; a guardian can ask for the child's access
report.

**Privacy.** Personal data never travels in URLs: children are looked up by ID number with POST.
"""

TAGS = [
    {"name": "auth", "description": "Tokens, signing keys and the caller's identity."},
    {"name": "admin", "description": "Platform operator: agencies and their API clients (`admin`)."},
    {
        "name": "children",
        "description": "The child registry (civil affairs writes; others read through the access layer).",
    },
    {"name": "guardianship", "description": "Guardianship records and the custody check."},
    {
        "name": "care schedule",
        "description": "What falls due: guardianship assessments (监护评估) and home visits (定期探访).",
    },
    {
        "name": "cases",
        "description": "Coordinated handling (协同处置): cases, referrals (转介) with deadlines, joint "
        "consultations (会商) and their actions (`cases:write` to change them).",
    },
    {
        "name": "reports",
        "description": "Mandatory reports (强制报告, Minors Protection Law art. 11): filing, routing to "
        "police and civil affairs, acknowledgement (受理) on the clock, outcomes, linking to the registry.",
    },
    {
        "name": "statistics",
        "description": "Survey counts (摸底排查): children, entries and exits, services, the regional "
        "dashboard; small counts suppressed (`statistics:read`).",
    },
    {"name": "consents", "description": "Guardian consents and the guardian's access report."},
    {"name": "access policy", "description": "The statutory rules that decide cross-agency reads."},
    {"name": "operations", "description": "Health, readiness and metrics."},
    {"name": "audit", "description": "The access log of every cross-agency read and denial (`audit:read`)."},
    {
        "name": "events",
        "description": "The event exchange: the catalog of event types, publishing, and the pull feed.",
    },
    {
        "name": "subscriptions",
        "description": "Your agency's event subscriptions: webhooks and pull, deliveries, replay, test ping.",
    },
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    database_url = resolve_database_url(settings)
    pooled = settings.transaction_pooled
    await enforce_least_privilege(
        asyncpg_dsn(database_url), production=not settings.is_development, pooled=pooled
    )
    db = create_database(database_url, pool_size=settings.db_pool_size, pooled=pooled)
    keys = KeyRing(settings.resolved_key_dir, create_if_empty=settings.is_development)
    app.state.db = db
    app.state.keys = keys
    app.state.token_verifier = TokenVerifier(keys, settings)
    app.state.client_directory = ClientDirectory(db.engine, settings.client_status_ttl_seconds)
    app.state.agency_kinds = AgencyKinds(db.engine)
    app.state.consent_lookup = consent_lookup(asyncpg_dsn(database_url), pooled=pooled)
    app.state.door = Door(
        load_policy(),
        await start_audit(
            app,
            database_url,
            keys=keys,
            issuer=settings.issuer,
            checkpoint_seconds=settings.audit_checkpoint_seconds,
            pooled=pooled,
        ),
        consents=app.state.consent_lookup,
        break_glass_daily_limit=settings.break_glass_daily_limit,
    )
    await start_events(app, settings, listen_dsn(settings, database_url))
    app.state.custody_lookup = guardianship_service.custody_lookup(asyncpg_dsn(database_url), pooled=pooled)
    # Everything built so far (routes, models, SQLAlchemy metadata, policy) lives as long as the
    # process: move it out of the collector's view, so each full collection scans only what
    # requests allocate. Without this, a full collection under load walked ~170k long-lived
    # objects and paused the worker for tens of milliseconds (bench/README.md).
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        await stop_events(app)
        await app.state.custody_lookup.aclose()
        await app.state.consent_lookup.aclose()
        await stop_audit(app)
        await db.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="ChildLink API",
        version=__version__,
        summary="Child-protection data sharing between agencies: registry, custody, consent, events.",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # Off, FastAPI skips its per-request probe for a configured SDK. On, spans and metrics only:
        # FastAPI's log export would carry exception messages, which the service's own logs never do.
        telemetry={"logs": False} if settings.otel else {"tracing": False, "metrics": False, "logs": False},
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.token_limiter = FailureLimiter(
        per_source=settings.token_failures_per_source, per_client=settings.token_failures_per_client
    )
    install_error_handlers(app)
    install_database_error_handlers(app)
    if settings.docs:
        install_docs(app)
    app.include_router(due.wrong_methods)
    for module in (
        oauth,
        identity,
        due,  # before children: `/v1/children/due` is not a child id
        children,
        guardianship,
        consents,
        access_report,
        policy,
        audit,
        break_glass,
        statistics,
        ops,
        cases,
        referrals,
        consultations,
        timeline,
        reports,
    ):
        app.include_router(module.router)
    app.include_router(events_router.router)
    app.include_router(subscriptions_router.router)
    app.include_router(deliveries_router.router)
    install_webhooks(app)
    install_openapi_docs(app)
    # Middleware added first runs innermost: the custody check's direct path runs inside CORS
    # and the request context, so both apply to it as to every route.
    app.add_middleware(DirectRoutes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[str(o).rstrip("/") for o in settings.cors_origins],
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "Idempotency-Key",
                "X-Purpose-Of-Use",
                "X-Break-Glass",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        metrics=app.state.metrics,
        production=not settings.is_development,
        max_header_bytes=settings.max_header_bytes,
        max_header_line_bytes=settings.max_header_line_bytes,
    )
    return app
