"""A real HTTP/1.1 webhook receiver on loopback for the delivery tests (asyncio streams, no
framework): it records every request and answers as the test tells it to."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


Responder = Callable[[Received], Awaitable[tuple[int, dict[str, str]]] | tuple[int, dict[str, str]]]


@dataclass
class Receiver:
    """``await Receiver().start()``; ``url`` to subscribe; ``requests`` in arrival order."""

    responder: Responder | None = None
    requests: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _server: asyncio.Server | None = None
    _arrived: asyncio.Condition | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Receiver:
        self._arrived = asyncio.Condition()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/childlink"

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    async def wait_for(self, predicate: Callable[[Receiver], bool], within: float = 10.0) -> None:
        assert self._arrived is not None
        async with asyncio.timeout(within):
            async with self._arrived:
                await self._arrived.wait_for(lambda: predicate(self))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Received(method, path, headers, body, time.monotonic())
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    status, extra = 200, {}
                    if self.responder is not None:
                        answer = self.responder(request)
                        status, extra = await answer if asyncio.iscoroutine(answer) else answer  # type: ignore[misc]
                finally:
                    self.in_flight -= 1
                request.status = status
                self.requests.append(request)
                head = f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write((head + "\r\n").encode("latin-1"))
                await writer.drain()
                assert self._arrived is not None
                async with self._arrived:
                    self._arrived.notify_all()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
