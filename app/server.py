"""The HTTP protocol ``childlink serve`` runs: uvicorn's httptools parser with a bounded head.

httptools keeps no limit of its own on a request's head: it buffers a header line however long
it grows, so a client sending one 64 MB header kept 64 MB in the server (four at once took a
worker from 131 MB to 450 MB) and then got a 200. :class:`BoundedHttpToolsProtocol` counts the
bytes of each request's head as they arrive and, once they pass ``CHILDLINK_MAX_HEADER_BYTES``
before the head is complete, answers 431 (problem+json, as every refusal) and closes the
connection. The parser has then buffered at most the limit and one read (the event loop reads
at most 256 KiB at a time). :class:`app.observability.RequestContextMiddleware` checks the
finished headers again, per line and in total, under any server.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import get_settings
from app.errors import PROBLEM_BASE, PROBLEM_JSON
from app.observability import new_request_id

HEADERS_TOO_LARGE = "headers_too_large"


def headers_too_large_response(limit: int, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole 431 answer, status line to body."""
    request_id = new_request_id()
    body = json.dumps(
        {
            "type": PROBLEM_BASE + HEADERS_TOO_LARGE,
            "title": "Request header fields too large",
            "status": 431,
            "code": HEADERS_TOO_LARGE,
            "detail": f"A request's headers are limited to {limit} bytes in all.",
            "request_id": request_id,
        }
    ).encode()
    lines = [b"HTTP/1.1 431 Request Header Fields Too Large"]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: " + PROBLEM_JSON.encode(),
        b"content-length: " + str(len(body)).encode(),
        b"x-content-type-options: nosniff",
        b"x-request-id: " + request_id.encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head beyond the configured size."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_limit = get_settings().max_header_bytes
        self.in_head = True  # a connection starts with a request's head
        self.head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = 0

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        was_in_head = self.in_head
        super().data_received(data)
        if not self.in_head or self.parser is None or self.transport.is_closing():
            return
        # Still inside a head after this read. A read that ended one request's body and began
        # the next request's head counts from the next read on (at most one read uncounted).
        if was_in_head:
            self.head_bytes += len(data)
        if self.head_bytes > self.head_limit:
            self.logger.warning("request head over %d bytes refused (431)", self.head_limit)
            self.transport.write(
                headers_too_large_response(self.head_limit, self.server_state.default_headers)
            )
            self.transport.close()


UVICORN_OPTIONS: dict[str, Any] = {
    "http": f"{__name__}:BoundedHttpToolsProtocol",
    "log_config": None,  # the app configures logging (JSON, no personal data)
    "access_log": False,  # uvicorn's prints raw URLs; the app logs route templates
    "proxy_headers": False,
}
"""How ``childlink serve`` runs uvicorn, and how the tests run it."""
