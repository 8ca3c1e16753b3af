"""A small HTTP/1.1 client for webhook POSTs: kept-alive connections per receiver, one write per
request, the answer's status line and headers, a bounded drain of its body.

Webhook delivery is the worker's hot path, and a general client (httpx over httpcore over anyio)
cost more CPU per request than the rest of a delivery together: request and header objects,
cancel scopes, a pool that inspects every connection for every request. A webhook needs one
method, headers we write ourselves, and an answer read no further than its status, so this is
the whole of it:

- **Connections** go to one checked address and port (the caller pins them after the SSRF check),
  with TLS verified against the URL's host name (its SNI) for ``https``. No proxy, no redirects.
- **Framing**: the request is written once (head and body). The answer's head is read up to
  :data:`MAX_HEAD` bytes; 1xx interim answers are skipped. Its body is framed by
  ``Content-Length`` or ``chunked``, or runs to the close of the connection.
- **Reuse**: a connection goes back to the pool only when its answer's body was read to the end
  within :data:`MAX_BODY` and neither side asked to close. A kept-alive connection the receiver
  closed meanwhile fails before any answer arrives: the request is then sent once more on a new
  connection (a webhook is delivered at least once; its ``webhook-id`` lets a receiver drop a
  duplicate).
- **Deadlines** are the caller's: nothing here waits on a timer, so a caller's cancellation
  (its one deadline for the whole exchange) closes the connection it was using.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from urllib.parse import quote

MAX_HEAD = 64 * 1024
"""Bytes of an answer's status line and headers; a longer head is a protocol error."""
MAX_BODY = 64 * 1024
"""Bytes of an answer's body drained (and thrown away) so its connection can be reused."""
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,18}")


class ProtocolError(Exception):
    """The receiver's answer is not HTTP/1.x as we can read it (or the connection ended first)."""


class ConnectError(Exception):
    """No connection could be opened to the receiver."""


@dataclass(slots=True)
class Answer:
    """A receiver's answer: its status and (lower-cased) headers; the body still unread."""

    status: int
    headers: dict[str, str]
    _connection: _Connection
    _pool: ReceiverPool
    _framing: tuple[str, int] = ("none", 0)
    _released: bool = False

    async def release(self, *, grace: float) -> None:
        """Drain the body (at most :data:`MAX_BODY`, for at most ``grace`` seconds) and hand
        the connection back, or close it when that is not possible. Never raises."""
        if self._released:
            return
        self._released = True
        reusable = False
        try:
            async with asyncio.timeout(grace):
                reusable = await self._drain()
        except Exception:  # whatever the receiver sent, the answer's status stands
            reusable = False
        finally:
            if reusable and self._connection.keep_alive:
                self._pool.put(self._connection)
            else:
                self._connection.close()

    async def _drain(self) -> bool:
        """Read the body to its end; whether it ended within the cap (and framed, so the
        connection may carry another request)."""
        reader = self._connection.reader
        kind, length = self._framing
        if kind == "none":
            return True
        if kind == "length":
            if length > MAX_BODY:
                return False
            await reader.readexactly(length)
            return True
        if kind == "chunked":
            drained = 0
            while True:
                size_line = await reader.readuntil(b"\r\n")
                digits = size_line.split(b";", 1)[0].strip()
                # Hex digits only: int() would also take a sign, "0x" or underscores.
                if not _HEX.fullmatch(digits):
                    raise ProtocolError("bad chunk size")
                size = int(digits, 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return True
                drained += size
                if drained > MAX_BODY:
                    return False
                await reader.readexactly(size + 2)
        # Delimited by the close of the connection: read what comes, never reuse it.
        drained = 0
        while chunk := await reader.read(16384):
            drained += len(chunk)
            if drained > MAX_BODY:
                break
        return False


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    keep_alive: bool = True

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class ReceiverPool:
    """Kept-alive connections to one receiver: an address, a port and, for TLS, a host name."""

    address: str
    port: int
    tls_name: str | None
    tls: ssl.SSLContext | None
    max_idle: int
    _idle: list[_Connection] = field(default_factory=list)

    def close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def put(self, connection: _Connection) -> None:
        if len(self._idle) < self.max_idle and not connection.writer.is_closing():
            self._idle.append(connection)
        else:
            connection.close()

    def _take(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.writer.is_closing() and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self.address,
                self.port,
                ssl=self.tls,
                server_hostname=self.tls_name if self.tls is not None else None,
                limit=MAX_HEAD,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(type(exc).__name__) from None
        return _Connection(reader, writer)

    async def post(self, head: bytes, body: bytes) -> Answer:
        """Send one request (``head`` ends with the blank line) and read the answer's head."""
        connection = self._take()
        if connection is not None:
            try:
                return await self._exchange(connection, head, body)
            except _NoAnswer:
                pass  # closed by the receiver while idle: once more, on a new connection
        connection = await self._connect()
        try:
            return await self._exchange(connection, head, body)
        except _NoAnswer as exc:
            raise ProtocolError("the receiver closed the connection without answering") from exc

    async def _exchange(self, connection: _Connection, head: bytes, body: bytes) -> Answer:
        try:
            connection.writer.write(head + body)
            await connection.writer.drain()
            status, headers = await _read_head(connection.reader)
            framing = _framing(status, headers)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, _NoAnswer | ConnectionError):
                raise _NoAnswer from exc
            if isinstance(exc, asyncio.LimitOverrunError | asyncio.IncompleteReadError):
                raise ProtocolError("the answer's head is too long or cut short") from None
            raise
        # A switched protocol (101) is not HTTP any more: that connection carries nothing else.
        connection.keep_alive = status != 101 and "close" not in headers.get("connection", "").lower()
        return Answer(status, headers, connection, self, framing)


class _NoAnswer(Exception):
    """The connection ended before any byte of an answer."""


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _NoAnswer from None
            raise
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError("not an HTTP/1.x status line")
        status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError("malformed header line")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
            headers["connection"] = "close"
        if 100 <= status < 200 and status != 101:
            continue  # an interim answer (100 Continue): the real one follows
        return status, headers


def _framing(status: int, headers: dict[str, str]) -> tuple[str, int]:
    if status in (204, 304) or 100 <= status < 200:
        return ("none", 0)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return ("chunked", 0)
    length = headers.get("content-length")
    if length is not None:
        if not _DIGITS.fullmatch(length):
            raise ProtocolError("bad content-length")
        return ("length", int(length)) if int(length) else ("none", 0)
    return ("close", 0)


def request_head(target: str, headers: dict[str, str], body_length: int) -> bytes:
    """``POST target HTTP/1.1`` with ``headers`` and a ``content-length``. Every value is ours
    (signatures, ids, the checked host), but a line break in one would forge a header: refused."""
    # Already percent-encoded parts stay as they are; anything else outside ASCII is encoded.
    target = quote(target, safe="/:?#[]@!$&'()*+,;=%~-._")
    lines = [f"POST {target} HTTP/1.1"]
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
            raise ValueError("header values may not contain line breaks")
        lines.append(f"{name}: {value}")
    lines.append(f"content-length: {body_length}")
    if any(c in target for c in "\r\n\0 "):
        raise ValueError("the request target may not contain spaces or line breaks")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
