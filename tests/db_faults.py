"""Faults a real PostgreSQL connection meets in production, made on purpose: a backend killed
with its socket left open (the window in which asyncpg still believes the connection usable),
killed backends, and a connection class that notices two operations overlapping."""

from __future__ import annotations

import asyncio
import gc
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest


class KillWindowProxy:
    """A loopback TCP proxy in front of PostgreSQL that holds a killed backend's connection in
    the moment between its last message and its end.

    A backend killed while its connection is idle (``pg_terminate_backend``,
    ``idle_session_timeout``, a restart) sends a FATAL ErrorResponse, then closes the socket. The
    client reads the two in different event-loop turns, and a query sent in between meets a
    connection that asyncpg still reports open. Until :meth:`release`, the proxy forwards the
    FATAL message but holds the close back, so a test lands in that window every time instead of
    by chance.
    """

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        self._dsn = dsn
        self._host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        self._port = int(query.get("port", [str(parts.port or 5432)])[0])
        self.backend_closed = asyncio.Event()
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._streams: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> KillWindowProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
        assert self._server is not None
        self._server.close()
        for stream in self._streams:  # ends every pipe (cancelling a handler makes asyncio log it)
            stream.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def release(self) -> None:
        """Let held connections end (and later ones end at once)."""
        self._released.set()

    async def connect(self, application_name: str, **kwargs: Any) -> asyncpg.Connection:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return await asyncpg.connect(
            self._dsn,
            host="127.0.0.1",
            port=port,
            ssl=False,
            server_settings={"application_name": application_name},
            **kwargs,
        )

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._streams.add(client_writer)
        try:
            if self._host.startswith("/"):
                backend = await asyncio.open_unix_connection(f"{self._host}/.s.PGSQL.{self._port}")
            else:
                backend = await asyncio.open_connection(self._host, self._port)
            self._streams.add(backend[1])
            await asyncio.gather(
                self._pipe(client_reader, backend[1], from_backend=False),
                self._pipe(backend[0], client_writer, from_backend=True),
                return_exceptions=True,
            )
        except Exception:  # noqa: S110 - a failed hop shows as the client's connection error
            pass
        finally:
            client_writer.close()
            self._handlers.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_backend: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if from_backend:
                self.backend_closed.set()
                await self._released.wait()
        finally:
            writer.close()


def exclusive_connection_class() -> type[asyncpg.Connection]:
    """An asyncpg connection class that counts queries started while another one is running on
    the same connection (asyncpg would refuse the second: here it is a test failure, not a 503)."""

    class ExclusiveConnection(asyncpg.Connection):
        overlaps = 0

        async def fetch(self, *args: Any, **kwargs: Any) -> list[asyncpg.Record]:
            if getattr(self, "busy", False):
                ExclusiveConnection.overlaps += 1
            self.busy = True
            try:
                return await super().fetch(*args, **kwargs)
            finally:
                self.busy = False

    return ExclusiveConnection


async def kill_backends(admin: asyncpg.Connection, application_name: str) -> int:
    """Terminate this test's own backends only: never another database's, never the app's."""
    killed: int = await admin.fetchval(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()",
        application_name,
    )
    return killed


def stray_asyncio_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What asyncio logged, such as "Task exception was never retrieved" (logged when the task
    is collected, hence the collection first)."""
    gc.collect()
    return [r.getMessage() for r in caplog.records if r.name == "asyncio"]
