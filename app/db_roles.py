"""The two database roles: the owner that migrations run as, and the service's restricted role.

The access log's append-only triggers hold only against a role that cannot switch them off: the
owner of a table (and a superuser) can ``ALTER TABLE ... DISABLE TRIGGER``, drop or truncate it.
So the schema belongs to one role (``childlink_owner`` in the examples), which only
``childlink migrate`` uses, and the service connects as another (``childlink_app``) that may
read and write the ordinary tables but only read and append to the access log and its chain.
The hash chain (``childlink audit verify``) still catches the owner; the grants stop the service.

The role names and passwords come from the two URLs: ``DATABASE_URL`` names the service's role,
``CHILDLINK_MIGRATION_DATABASE_URL`` the owner. ``childlink db roles`` creates both (connected as
``CHILDLINK_DB_ADMIN_URL``, a superuser or a role with CREATEROLE); every ``childlink migrate``
as the owner then grants the service's role what it needs on every table, new ones included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import asyncpg

logger = logging.getLogger(__name__)

APPEND_ONLY_TABLES = ("access_log", "access_log_chain", "access_log_checkpoint", "access_log_archive")
"""Tables the service may read and append to, never change: the access log (and each of its
partitions), its chain, its checkpoints and the record of its archives."""
SERVICE_FUNCTIONS = (
    "access_log_create_partitions(integer, timestamptz)",
    "delivery_attempt_create_partitions(integer, timestamptz)",
    "delivery_attempt_drop_partitions(timestamptz)",
    "outbox_event_number(uuid)",
)
"""Functions the service may call: creating the log's and the delivery attempts' partitions
ahead and dropping delivery attempts' partitions past their retention (SECURITY DEFINER), and
numbering committed events (with the caller's own rights)."""
READ_ONLY_TABLES = ("alembic_version",)
STARTUP_CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Login:
    user: str
    password: str | None


def login_of(url: str) -> Login:
    """The role and password a ``postgresql://`` URL logs in with (libpq's default: the OS user)."""
    parts = urlsplit(url)
    if not parts.username:
        raise ValueError("the database URL must name its role (postgresql://ROLE:PASSWORD@host/db)")
    password = unquote(parts.password) if parts.password is not None else None
    return Login(unquote(parts.username), password)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def grant_app_role(conn: asyncpg.Connection, app_role: str) -> None:
    """Give ``app_role`` exactly what the service needs on every table and sequence of the schema.

    Run by the schema's owner at the end of every migrate, so a table a migration adds is covered
    at once. Idempotent. Privileges beyond these (TRUNCATE, REFERENCES, TRIGGER, UPDATE or DELETE
    on the append-only tables) are revoked, so a grant made by hand does not linger.
    """
    role = _ident(app_role)
    tables = [
        r["tablename"]
        for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    ]
    # A partition of an append-only table is append-only too.
    partitions_of = {
        r["child"]: r["parent"]
        for r in await conn.fetch(
            "SELECT c.relname AS child, p.relname AS parent FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
        )
    }
    async with conn.transaction():
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        for table in tables:
            name = f"public.{_ident(table)}"
            await conn.execute(f"REVOKE ALL ON {name} FROM {role}")
            if table in APPEND_ONLY_TABLES or partitions_of.get(table) in APPEND_ONLY_TABLES:
                allowed = "SELECT, INSERT"
            elif table in READ_ONLY_TABLES:
                allowed = "SELECT"
            else:
                allowed = "SELECT, INSERT, UPDATE, DELETE"
            await conn.execute(f"GRANT {allowed} ON {name} TO {role}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
        for function in SERVICE_FUNCTIONS:
            if await conn.fetchval("SELECT to_regprocedure($1) IS NOT NULL", f"public.{function}"):
                await conn.execute(f"GRANT EXECUTE ON FUNCTION public.{function} TO {role}")


async def create_roles(conn: asyncpg.Connection, *, owner: Login, app: Login) -> list[str]:
    """Create (or bring into line) the owner and the service's role in the connected database;
    returns what was done, for the operator. Run as a superuser or a role with CREATEROLE.

    Existing tables owned by another role (a deployment that used to migrate as the superuser)
    are handed to the owner, so the owner can migrate them and the old role no longer matters.
    """
    if owner.user == app.user:
        raise ValueError("the owner and the service must be different roles")
    done: list[str] = []
    database = await conn.fetchval("SELECT current_database()")
    async with conn.transaction():
        for login, kind in ((owner, "owner"), (app, "service")):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", login.user)
            verb = "ALTER" if exists else "CREATE"
            password = f" PASSWORD {_literal(login.password)}" if login.password else ""
            await conn.execute(
                f"{verb} ROLE {_ident(login.user)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"NOREPLICATION NOBYPASSRLS{password}"
            )
            done.append(f"{verb.lower()}d {kind} role {login.user}")
        if await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", app.user, owner.user):
            await conn.execute(f"REVOKE {_ident(owner.user)} FROM {_ident(app.user)}")
            done.append(f"removed {app.user} from {owner.user}")
        await conn.execute(
            f"GRANT CONNECT ON DATABASE {_ident(database)} TO {_ident(owner.user)}, {_ident(app.user)}"
        )
        await conn.execute(f"ALTER SCHEMA public OWNER TO {_ident(owner.user)}")
        # Before PostgreSQL 15 every role may create tables in public; the service must not.
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        done.append(f"schema public owned by {owner.user}")
        foreign = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') "
            "AND pg_get_userbyid(c.relowner) <> $1",
            owner.user,
        )
        for row in foreign:
            # Also hands over the table's indexes and the sequences its columns own.
            await conn.execute(f"ALTER TABLE public.{_ident(row['relname'])} OWNER TO {_ident(owner.user)}")
        functions = await conn.fetch(
            "SELECT p.oid::regprocedure::text AS signature FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> $1",
            owner.user,
        )
        for row in functions:
            await conn.execute(f"ALTER FUNCTION {row['signature']} OWNER TO {_ident(owner.user)}")
        if foreign or functions:
            done.append(f"handed {len(foreign)} tables and {len(functions)} functions to {owner.user}")
        await grant_app_role(conn, app.user)
        done.append(f"granted {app.user} the service's privileges")
    return done


async def runtime_role_problems(conn: asyncpg.Connection) -> list[str]:
    """Why the connected role could get round the access log's append-only rule, if it could:
    a superuser, the owner of the log (or a member of its owner's role), or a role holding
    UPDATE, DELETE or TRUNCATE on it. Empty when the role is properly restricted."""
    row = await conn.fetchrow(
        "SELECT current_user AS name, rolsuper FROM pg_roles WHERE rolname = current_user"
    )
    if row is not None and row["rolsuper"]:
        return [f"the service connects as {row['name']}, a superuser"]
    problems: list[str] = []
    for table in APPEND_ONLY_TABLES:
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass($1)", f"public.{table}"
        )
        if owner is None:
            continue
        if await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", owner):
            problems.append(f"the service's role owns {table} (or is a member of its owner {owner})")
            continue
        for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
            if await conn.fetchval("SELECT has_table_privilege($1, $2)", f"public.{table}", privilege):
                problems.append(f"the service's role holds {privilege} on {table}")
    return problems


async def enforce_least_privilege(dsn: str, *, production: bool, pooled: bool = False) -> None:
    """Refuse to run in production as a role that could get round the access log's append-only
    rule (see :func:`runtime_role_problems`); in development (the embedded server runs as its
    superuser) say so once and carry on.

    A database that does not answer at startup is not a reason to stay down (``/readyz`` reports
    it, and the service recovers when it returns): the check is skipped with a warning then, and
    made at the next start."""
    try:
        # Through a transaction-mode pooler: no cached (named) statements.
        conn = await asyncpg.connect(
            dsn, timeout=STARTUP_CHECK_TIMEOUT_SECONDS, statement_cache_size=0 if pooled else 100
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        logger.warning("the database role could not be checked at startup: %s", type(exc).__name__)
        return
    try:
        problems = await runtime_role_problems(conn)
    finally:
        await conn.close()
    if not problems:
        return
    advice = "; connect as a restricted role (`childlink db roles` creates one, see README)"
    if production:
        raise RuntimeError("refusing to start: " + "; ".join(problems) + advice)
    logger.warning("the database role is not least-privilege: %s%s", "; ".join(problems), advice)
