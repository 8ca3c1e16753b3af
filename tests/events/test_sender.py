"""The webhook sender's connections: kept alive per receiver, and never at the cost of an answer.

Each receiver here is a raw HTTP/1.1 server on loopback that counts the connections it accepts
and answers as the test says (a chunked body, a body past the drain cap, closing after each
answer), so what a receiver's operator would see is what is asserted."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator

import pytest

from app.config import Settings
from app.events import http1, ssrf
from app.events.sender import Outcome, WebhookSender


class CountingReceiver:
    """Answers every POST with ``answer`` (bytes of a whole HTTP answer) and, if ``close``,
    hangs up after it."""

    def __init__(self, answer: bytes, *, close: bool = False) -> None:
        self.answer = answer
        self.close = close
        self.connections = 0
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> CountingReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.requests += 1
                writer.write(self.answer)
                await writer.drain()
                if self.close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


@pytest.fixture
async def sender(settings: Settings) -> AsyncIterator[WebhookSender]:
    sender = WebhookSender(settings.model_copy(update={"webhook_allowed_hosts": ["127.0.0.1"]}))
    try:
        yield sender
    finally:
        await sender.aclose()


async def send(sender: WebhookSender, url: str, n: int) -> list[Outcome]:
    outcomes = []
    for i in range(n):
        result = await sender.send(
            url,
            webhook_id=f"msg_{i}",
            body=b'{"n": %d}' % i,
            secrets=["whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"],
        )
        outcomes.append(result.outcome)
    return outcomes


class TestKeptAlive:
    async def test_twenty_webhooks_to_one_receiver_travel_on_one_connection(
        self, sender: WebhookSender
    ) -> None:
        receiver = await CountingReceiver(b"HTTP/1.1 204 No Content\r\n\r\n").start()
        try:
            assert await send(sender, receiver.url, 20) == [Outcome.delivered] * 20
            assert receiver.requests == 20
            assert receiver.connections == 1
        finally:
            await receiver.stop()

    async def test_a_chunked_answer_is_read_to_its_end_and_the_connection_reused(
        self, sender: WebhookSender
    ) -> None:
        answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nthank\r\n3\r\nyou\r\n0\r\n\r\n"
        receiver = await CountingReceiver(answer).start()
        try:
            assert await send(sender, receiver.url, 5) == [Outcome.delivered] * 5
            assert receiver.connections == 1
        finally:
            await receiver.stop()


class TestAnswersComeFirst:
    async def test_an_answer_with_a_body_past_the_cap_is_delivered_and_its_connection_dropped(
        self, sender: WebhookSender
    ) -> None:
        size = http1.MAX_BODY + 1
        answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size
        receiver = await CountingReceiver(answer).start()
        try:
            assert await send(sender, receiver.url, 3) == [Outcome.delivered] * 3
            assert receiver.connections == 3
        finally:
            await receiver.stop()

    async def test_a_receiver_that_hangs_up_after_each_answer_still_gets_every_webhook_once(
        self, sender: WebhookSender
    ) -> None:
        # No "connection: close": the sender finds out only when it reuses the connection, and
        # then sends on a new one instead of recording a failure.
        receiver = await CountingReceiver(b"HTTP/1.1 204 No Content\r\n\r\n", close=True).start()
        try:
            assert await send(sender, receiver.url, 5) == [Outcome.delivered] * 5
            assert receiver.requests == 5
        finally:
            await receiver.stop()

    async def test_a_gone_answer_with_connection_close_is_read_as_gone(self, sender: WebhookSender) -> None:
        answer = b"HTTP/1.1 410 Gone\r\nconnection: close\r\ncontent-length: 4\r\n\r\ngone"
        receiver = await CountingReceiver(answer, close=True).start()
        try:
            assert await send(sender, receiver.url, 2) == [Outcome.gone] * 2
            assert receiver.connections == 2
        finally:
            await receiver.stop()

    @pytest.mark.parametrize(
        ("body", "outcome"),
        [
            # A body framed wrongly after a 200: the answer stands, the connection is dropped.
            (b"transfer-encoding: chunked\r\n\r\n-5\r\nthank\r\n0\r\n\r\n", Outcome.delivered),
            (b"transfer-encoding: chunked\r\n\r\n0x5\r\nthank\r\n0\r\n\r\n", Outcome.delivered),
            # A head that cannot be framed: a failed answer, recorded as such.
            (b"content-length: 5, 5\r\n\r\nthank", Outcome.failed),
            (b"content-length: \xc2\xb2\r\n\r\nthank", Outcome.failed),
        ],
    )
    async def test_a_malformed_answer_costs_its_connection_and_never_escapes_the_sender(
        self, sender: WebhookSender, body: bytes, outcome: Outcome
    ) -> None:
        receiver = await CountingReceiver(b"HTTP/1.1 200 OK\r\n" + body).start()
        try:
            assert await send(sender, receiver.url, 2) == [outcome] * 2
            assert receiver.connections == 2
        finally:
            await receiver.stop()


class TestCheckedAddresses:
    async def test_a_name_that_comes_to_resolve_inside_is_refused_once_its_check_is_due(
        self, sender: WebhookSender, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A passed check serves the deliveries of the next few seconds, as a resolver's cache
        # would; each still goes to the address that passed, and a name that comes to resolve to
        # an inside address is refused once the check is due again.
        resolved = {"hooks.example.test": [ipaddress.ip_address("127.0.0.1")]}

        async def resolve(host: str, port: int) -> list[ssrf.IPAddress]:
            return resolved[host]

        monkeypatch.setattr(ssrf, "_resolve", resolve)
        sender.checked_seconds = 0.3
        receiver = await CountingReceiver(b"HTTP/1.1 204 No Content\r\n\r\n").start()
        try:
            url = receiver.url.replace("127.0.0.1", "hooks.example.test")
            assert await send(sender, url, 1) == [Outcome.delivered]
            resolved["hooks.example.test"] = [ipaddress.ip_address("10.1.2.3")]
            assert await send(sender, url, 1) == [Outcome.delivered]  # to 127.0.0.1, which passed
            await asyncio.sleep(0.4)
            assert await send(sender, url, 2) == [Outcome.refused] * 2  # and refusals are not kept
            assert receiver.requests == 2
        finally:
            await receiver.stop()
