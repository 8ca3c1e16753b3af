"""The ``childlink`` command: serve, migrate, manage agencies, clients and keys, export the spec.

Every command works while ``serve`` runs, on the same database (the embedded one included: it
is shared through its data folder) and the same key folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import commands as audit_commands
from app.config import Settings, get_settings

T = TypeVar("T")

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def migrate(settings: Settings, url: str | None = None) -> None:
    """Bring the schema to the newest revision (serialized by an advisory lock), connected as
    ``url`` or ``CHILDLINK_MIGRATION_DATABASE_URL`` (the owner) or else ``DATABASE_URL``.

    When the service's role (``DATABASE_URL``) differs from the migrating one, it is granted what
    it needs on every table afterwards, new tables included (:func:`app.db_roles.grant_app_role`).
    """
    from alembic import command
    from alembic.config import Config

    from app.db import direct_database_url

    owner_url = url or settings.migration_database_url or direct_database_url(settings)
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent.parent / "migrations"))
    config.set_main_option("sqlalchemy.url", owner_url.replace("%", "%%"))
    command.upgrade(config, "head")
    if settings.database_url and settings.database_url != owner_url:
        asyncio.run(_grant_service_role(owner_url, settings.database_url))


async def _grant_service_role(owner_url: str, app_url: str) -> None:
    import asyncpg

    from app.db import asyncpg_dsn
    from app.db_roles import grant_app_role, login_of

    conn = await asyncpg.connect(asyncpg_dsn(owner_url))
    try:
        app_role = login_of(app_url).user
        if app_role == await conn.fetchval("SELECT current_user"):
            return
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", app_role):
            raise RuntimeError(
                f"the service's role {app_role} does not exist: run `childlink db roles` first"
            )
        await grant_app_role(conn, app_role)
    finally:
        await conn.close()


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.db import commit, create_database, resolve_database_url

    async def run() -> T:
        db = create_database(resolve_database_url(settings), pool_size=2, pooled=settings.transaction_pooled)
        try:
            async with db.sessionmaker() as session:
                result = await work(session)
                await commit(session)
                return result
        finally:
            await db.dispose()

    return asyncio.run(run())


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _fail(message: str, code: int = 1) -> int:
    print(f"childlink: {message}", file=sys.stderr)
    return code


def _secret_box(settings: Settings) -> Any:
    from app.events import vault

    return vault.load(settings.resolved_key_dir, create_if_missing=settings.is_development)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app import demo_banner
    from app.auth.keys import KeyRing
    from app.db import resolve_database_url
    from app.server import UVICORN_OPTIONS
    from app.services import demo

    resolve_database_url(settings)  # starts the embedded server once, for every worker
    if settings.database_url is None and settings.run_worker is None:
        # The embedded default is the whole installation: deliver webhooks in-process. Set here
        # for uvicorn's worker processes, which read settings afresh from the environment.
        os.environ["CHILDLINK_RUN_WORKER"] = "true"
    migrate(settings)
    # Create the first key before workers start, so they never race to make one each.
    KeyRing(settings.resolved_key_dir, create_if_empty=settings.is_development)

    if settings.is_development and "CHILDLINK_ISSUER" not in os.environ:
        # The development issuer is where this server answers, so `iss` names the port really
        # served. Set in the environment for uvicorn's worker processes too.
        os.environ["CHILDLINK_ISSUER"] = demo_banner.base_url(args.host, args.port)
        get_settings.cache_clear()  # the app factory, in this process, reads settings again
    keep = settings.is_development  # production never writes client secrets to disk

    async def seed(session: AsyncSession) -> tuple[list[Any], list[Any]] | None:
        if args.demo or await demo.is_empty(session):
            kept = demo.read_kept_secrets(settings.data_dir) if keep else {}
            credentials = await demo.load(session, kept=kept)
            return credentials, await demo.load_children(session, _secret_box(settings))
        return None

    seeded = _with_session(settings, seed)
    if seeded:
        if keep:
            demo.keep_secrets(settings.data_dir, seeded[0])
        print(demo_banner.render(seeded[0], args.host, args.port, seeded[1], kept=keep), flush=True)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it; under the default handler
    # that kills the process before atexit runs, so the embedded PostgreSQL kept running and its
    # handle list kept naming the dead process, which stopped every later run from stopping it.
    # Exiting normally lets the embedded server's atexit hook stop it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        **UVICORN_OPTIONS,
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from app.events import runner

    migrate(settings)
    return runner.run(settings, once=args.once)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings)
    print("database schema is up to date")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app import demo_banner
    from app.services import demo

    migrate(settings)

    async def seed(session: AsyncSession) -> tuple[list[Any], list[Any]]:
        return await demo.load(session), await demo.load_children(session, _secret_box(settings))

    credentials, child_ids = _with_session(settings, seed)
    if settings.is_development:
        demo.keep_secrets(settings.data_dir, credentials)
    print(demo_banner.render(credentials, "localhost", 8000, child_ids, kept=settings.is_development))
    return 0


def cmd_agency_add(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from app.models.agency import AgencyCreate, AgencyKind, AgencyPublic
    from app.services import agency as agency_service

    kind = args.kind or (args.code if args.code in {k.value for k in AgencyKind} else None)
    if kind is None:
        return _fail("--kind is required when the code is not one of the agency kinds")
    try:
        data = AgencyCreate(code=args.code, name=args.name, kind=AgencyKind(kind))
    except (ValidationError, ValueError) as exc:
        return _fail(f"invalid agency: {exc}")
    agency = _with_session(settings, lambda s: agency_service.register(s, data=data))
    # Through the public model, as the API answers: ISO 8601 times and the kind as its code.
    _print_json(AgencyPublic.model_validate(agency).model_dump(mode="json"))
    return 0


def cmd_client_add(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from app.models.client import ClientCreate
    from app.services import client as client_service

    try:
        data = ClientCreate(
            agency=args.agency,
            name=args.name or f"{args.agency} client",
            scopes=args.scopes.replace(",", " ").split(),
            region=args.region,
        )
    except ValidationError as exc:
        return _fail(f"invalid client: {exc}")
    created = _with_session(settings, lambda s: client_service.create(s, data=data))
    _print_json(created.model_dump(mode="json"))
    return 0


def cmd_client_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import client as client_service

    client = _with_session(settings, lambda s: client_service.revoke(s, args.client_id))
    _print_json(client_service.to_public(client).model_dump(mode="json"))
    return 0


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth.keys import rotate

    kid, removed = rotate(settings.resolved_key_dir)
    _print_json({"kid": kid, "removed": removed, "key_dir": str(settings.resolved_key_dir)})
    return 0


def cmd_db_roles(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg

    from app.db import asyncpg_dsn
    from app.db_roles import create_roles, login_of

    if not (settings.db_admin_url and settings.migration_database_url and settings.database_url):
        return _fail(
            "set CHILDLINK_DB_ADMIN_URL (a superuser), CHILDLINK_MIGRATION_DATABASE_URL (the owner "
            "role to create) and DATABASE_URL (the service role to create)",
            2,
        )
    try:
        owner, app = login_of(settings.migration_database_url), login_of(settings.database_url)
    except ValueError as exc:
        return _fail(str(exc), 2)

    async def run() -> list[str]:
        assert settings.db_admin_url is not None
        conn = await asyncpg.connect(asyncpg_dsn(settings.db_admin_url))
        try:
            return await create_roles(conn, owner=owner, app=app)
        finally:
            await conn.close()

    try:
        done = asyncio.run(run())
    except (ValueError, asyncpg.PostgresError) as exc:
        return _fail(f"could not set up the roles: {exc}")
    for line in done:
        print(line)
    return 0


def openapi_document() -> dict[str, Any]:
    from app.main import create_app

    return create_app(Settings()).openapi()


def render_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def cmd_openapi(args: argparse.Namespace, settings: Settings) -> int:
    rendered = render_openapi()
    path = Path(args.output) if args.output else OPENAPI_PATH
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != rendered:
            return _fail(f"{path} is out of date; run `childlink openapi` and commit it")
        print(f"{path} matches the app")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="childlink", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--demo", action="store_true", help="load demo agencies and clients")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="upgrade the schema to the newest revision").set_defaults(func=cmd_migrate)
    worker = sub.add_parser("worker", help="deliver webhooks until SIGTERM (run as many as you like)")
    worker.add_argument("--once", action="store_true", help="one round of deliveries, then exit")
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("demo", help="load the demo data and print client secrets").set_defaults(func=cmd_demo)

    agency = sub.add_parser("agency", help="manage agencies").add_subparsers(dest="action", required=True)
    agency_add = agency.add_parser("add", help="register an agency")
    agency_add.add_argument("code")
    agency_add.add_argument("--name", required=True)
    agency_add.add_argument("--kind", help="agency kind; defaults to the code when it is a kind")
    agency_add.set_defaults(func=cmd_agency_add)

    client = sub.add_parser("client", help="manage API clients").add_subparsers(dest="action", required=True)
    client_add = client.add_parser("add", help="create a client; prints its secret once")
    client_add.add_argument("--agency", required=True)
    client_add.add_argument(
        "--scopes", required=True, help='space-separated, e.g. "children:read custody:read"'
    )
    client_add.add_argument("--region", default="", help="division-code prefix; empty for all")
    client_add.add_argument("--name")
    client_add.set_defaults(func=cmd_client_add)
    client_revoke = client.add_parser("revoke", help="revoke a client")
    client_revoke.add_argument("client_id")
    client_revoke.set_defaults(func=cmd_client_revoke)

    keys = sub.add_parser("keys", help="manage signing keys").add_subparsers(dest="action", required=True)
    keys.add_parser(
        "rotate", help="add a new signing key; old keys verify until their tokens expire"
    ).set_defaults(func=cmd_keys_rotate)

    audit_commands.register(sub)

    database = sub.add_parser("db", help="the database roles").add_subparsers(dest="action", required=True)
    database.add_parser(
        "roles",
        help="create the schema owner (CHILDLINK_MIGRATION_DATABASE_URL's role) and the restricted "
        "service role (DATABASE_URL's), connected as CHILDLINK_DB_ADMIN_URL; safe to run again",
    ).set_defaults(func=cmd_db_roles)

    spec = sub.add_parser("openapi", help="write or check openapi/openapi.json")
    spec.add_argument("--check", action="store_true", help="fail if the committed spec differs from the app")
    spec.add_argument("--output")
    spec.set_defaults(func=cmd_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    from app.errors import AppError

    args = build_parser().parse_args(argv)
    settings = get_settings()
    try:
        return int(args.func(args, settings))
    except AppError as exc:
        return _fail(exc.detail or exc.title)


if __name__ == "__main__":
    sys.exit(main())
