"""Request heads under the server ``childlink serve`` runs: bounded, refused with 431."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.live import live_server


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[tuple[str, int]]:
    with live_server(create_app(settings.model_copy(update={"db_pool_size": 2}))) as url:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        yield parts.hostname, parts.port


def _read_response(sock: socket.socket, within: float = 10.0) -> bytes:
    sock.settimeout(within)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _send_until_answered(
    server: tuple[str, int], head: bytes, header_name: bytes, size: int
) -> tuple[bytes, int]:
    """Send ``head`` then one header of ``size`` bytes in 16 KiB pieces, stopping as soon as the
    server answers (a real client would go on; stopping keeps the answer from being lost to a
    reset). Returns the answer and how many header bytes went out."""
    sock = socket.create_connection(server)
    try:
        sock.sendall(head + header_name + b": ")
        sent = 0
        piece = b"a" * 16384
        while sent < size:
            readable, _, _ = select.select([sock], [], [], 0.02)
            if readable:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        return _read_response(sock), sent
    finally:
        sock.close()


def _problem(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


class TestOversizeHeaders:
    def test_a_64_mb_header_is_refused_with_431_long_before_it_ends(
        self, server: tuple[str, int], settings: Settings
    ) -> None:
        raw, sent = _send_until_answered(
            server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Padding", 64 * 1024 * 1024
        )
        status, headers, problem = _problem(raw)
        assert status == 431
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert problem["code"] == "headers_too_large"
        assert problem["status"] == 431
        # Refused within a few reads of the limit, not after buffering 64 MB.
        assert sent < settings.max_header_bytes + 1024 * 1024

    def test_many_header_lines_past_the_total_are_refused_with_431(
        self, server: tuple[str, int], settings: Settings
    ) -> None:
        lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"b" * 4000) for i in range(12))  # 48 KB, 4 KB each
        assert len(lines) > settings.max_header_bytes
        with socket.create_connection(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
            status, _, problem = _problem(_read_response(sock))
        assert status == 431
        assert problem["code"] == "headers_too_large"

    def test_one_header_line_over_the_line_limit_is_refused_with_431(
        self, server: tuple[str, int], settings: Settings
    ) -> None:
        # Under the total, over one line's limit: refused by the middleware, with a request id.
        host, port = server
        size = settings.max_header_line_bytes + 100
        assert size < settings.max_header_bytes
        response = httpx.get(f"http://{host}:{port}/healthz", headers={"X-Padding": "c" * size})
        assert response.status_code == 431
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "headers_too_large"
        assert response.json()["request_id"] == response.headers["x-request-id"]

    def test_ordinary_headers_and_keep_alive_still_work(self, server: tuple[str, int]) -> None:
        host, port = server
        with httpx.Client(base_url=f"http://{host}:{port}") as http:
            for _ in range(3):  # one connection, several requests: each head counted afresh
                response = http.get("/healthz", headers={"X-Padding": "d" * 6000})
                assert response.status_code == 200
