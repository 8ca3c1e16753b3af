"""Tokens from external issuers: verified against the issuer's JWKS on loopback, and accepted
only inside what its trust configuration lists (agencies, scopes, region prefix).

Each attack is a token the issuer really signed, claiming more than it is trusted with, sent to
a route that would answer 200 if the claim were believed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt

from app.config import Settings, TrustedIssuer
from app.db import Database
from app.main import create_app
from app.models.agency import AgencyKind
from tests.conftest import bearer, make_agency, make_client

Claims = dict[str, Any]
ISSUER = "https://idp.police.sichuan.example"
POLICE_51 = {"agencies": ["police"], "scopes": ["custody:read", "children:read"], "region": "51"}
"""The issue's example: a provincial police identity provider."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


@functools.cache
def _rsa_private_pem(owner: str) -> str:
    """One RSA key per owner for the whole run: generating them is slow."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class ExternalIdp:
    issuer: str
    private_pem: str
    public_pem: bytes
    kid: str

    def token(self, *, alg: str = "RS256", key: str | None = None, **changes: Any) -> str:
        now = int(time.time())
        claims: Claims = {
            "iss": self.issuer,
            "aud": "childlink",
            "sub": "sichuan-police-gateway",
            "agency": "police",
            "scope": "custody:read children:read idp:profile",
            "region": "5101",
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(8),
        }
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        headers = {"kid": self.kid, "typ": "at+jwt"}
        return str(jwt.encode(claims, key or self.private_pem, algorithm=alg, headers=headers))


def _idp() -> tuple[ExternalIdp, bytes]:
    private_pem = _rsa_private_pem("idp")
    public_pem = (
        serialization.load_pem_private_key(private_pem.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    public_jwk = {
        **jwk.construct(public_pem, "RS256").to_dict(),
        "kid": "idp-1",
        "use": "sig",
        "alg": "RS256",
    }
    return ExternalIdp(ISSUER, private_pem, public_pem, "idp-1"), json.dumps({"keys": [public_jwk]}).encode()


class JwksServer:
    """A JWKS endpoint on loopback; ``respond`` decides how it answers (whole, huge, dripping)."""

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.bytes_sent = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    respond(self)
                except OSError:
                    pass  # the service hung up on us: what the size and time limits are for

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.outer = self  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_document(document: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(document)))
        handler.end_headers()
        handler.wfile.write(document)

    return respond


Trusting = Callable[..., Awaitable[tuple[httpx.AsyncClient, ExternalIdp]]]


@pytest.fixture
async def trusting(settings: Settings, db: Database) -> AsyncIterator[Trusting]:
    """``await trusting(**trust)``: an instance of the service that trusts the loopback issuer
    with ``trust`` (the provincial police example by default), and the issuer itself."""
    await make_agency(db, code="police")
    async with AsyncExitStack() as stack:

        async def start(
            respond: Callable[[BaseHTTPRequestHandler], None] | None = None,
            deadline: float = 5.0,
            **trust: Any,
        ) -> tuple[httpx.AsyncClient, ExternalIdp]:
            idp, document = _idp()
            server = JwksServer(respond or serve_document(document))
            stack.callback(server.close)
            trusted = TrustedIssuer.model_validate(
                {"issuer": idp.issuer, "jwks_url": server.url, **POLICE_51, **trust}
            )
            instance = create_app(
                settings.model_copy(
                    update={"trusted_issuers": [trusted], "jwks_fetch_deadline_seconds": deadline}
                )
            )
            await stack.enter_async_context(instance.router.lifespan_context(instance))
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=instance), base_url="http://trusting")
            )
            http.server = server  # type: ignore[attr-defined]
            return http, idp

        yield start


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def auth_log() -> Iterator[list[logging.LogRecord]]:
    """What ``app.auth`` logs at WARNING or above (on its own handler: starting an instance of
    the service reconfigures the root logger's)."""
    handler = _Collect()
    logger = logging.getLogger("app.auth")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer")


class TestTokenWithinItsTrust:
    async def test_token_from_a_trusted_issuer_is_accepted_with_its_claims(self, trusting: Trusting) -> None:
        http, idp = await trusting()
        response = await http.get("/v1/me", headers=bearer(idp.token()))
        assert response.status_code == 200, response.text
        me = response.json()
        assert (me["client_id"], me["agency"], me["region"], me["issuer"]) == (
            "sichuan-police-gateway",
            "police",
            "5101",
            idp.issuer,
        )
        assert me["scopes"] == ["children:read", "custody:read"], "a scope unknown here must grant nothing"

    @pytest.mark.parametrize(
        "attack",
        ["hs256_with_its_public_key", "alg_none", "unknown_kid", "expired", "wrong_audience", "not_its_key"],
    )
    async def test_hostile_external_tokens_get_401(self, trusting: Trusting, attack: str) -> None:
        http, idp = await trusting()
        if attack == "hs256_with_its_public_key":
            signing_input = (
                _segment({"alg": "HS256", "typ": "at+jwt", "kid": idp.kid})
                + "."
                + _segment(jwt.get_unverified_claims(idp.token()))
            )
            mac = hmac.new(idp.public_pem, signing_input.encode(), hashlib.sha256).digest()
            token = signing_input + "." + _b64(mac)
        elif attack == "alg_none":
            claims = jwt.get_unverified_claims(idp.token())
            token = _segment({"alg": "none", "typ": "at+jwt", "kid": idp.kid}) + "." + _segment(claims) + "."
        elif attack == "unknown_kid":
            _, rest = idp.token().split(".", 1)
            token = _segment({"alg": "RS256", "typ": "at+jwt", "kid": "idp-2"}) + "." + rest
        elif attack == "expired":
            token = idp.token(iat=int(time.time()) - 900, exp=int(time.time()) - 300)
        elif attack == "wrong_audience":
            token = idp.token(aud="another-service")
        else:
            token = idp.token(key=_rsa_private_pem("someone-else"))
        assert_invalid_token(await http.get("/v1/me", headers=bearer(token)))

    async def test_external_token_without_a_region_claim_is_refused_not_nationwide(
        self, trusting: Trusting
    ) -> None:
        http, idp = await trusting()
        response = await http.get("/v1/me", headers=bearer(idp.token(region=None)))
        assert_invalid_token(response)
        assert "region" in response.json()["detail"]


class TestClaimsBeyondTrust:
    async def test_external_issuer_cannot_grant_admin(self, trusting: Trusting, db: Database) -> None:
        """The reproducer: `scope: admin`, `agency: platform`, `region: ""` got 200 on the client list."""
        await make_agency(db, code="platform")
        http, idp = await trusting()
        token = idp.token(scope="admin", agency="platform", region="")
        assert_invalid_token(await http.get("/v1/clients", headers=bearer(token)))

    async def test_external_issuer_cannot_grant_admin_to_an_agency_it_may_assert(
        self, trusting: Trusting
    ) -> None:
        http, idp = await trusting()
        token = idp.token(scope="admin children:read")
        response = await http.get("/v1/clients", headers=bearer(token))
        assert_invalid_token(response)
        assert "admin" in response.json()["detail"]

    async def test_external_issuer_cannot_grant_audit_read(self, trusting: Trusting) -> None:
        http, idp = await trusting()
        token = idp.token(scope="audit:read")
        assert_invalid_token(await http.get("/v1/audit/access-log", headers=bearer(token)))

    async def test_external_issuer_cannot_grant_a_scope_beyond_its_trust(self, trusting: Trusting) -> None:
        http, idp = await trusting()
        token = idp.token(scope="children:read children:write")
        response = await http.get("/v1/me", headers=bearer(token))
        assert_invalid_token(response)
        assert "children:write" in response.json()["detail"]

    @pytest.mark.parametrize("agency", ["civil-affairs", "platform", "police-beijing"])
    async def test_external_issuer_cannot_assert_another_agency(
        self, trusting: Trusting, db: Database, agency: str
    ) -> None:
        # Registered, so the refusal is about the trust, not about an unknown agency.
        await make_agency(db, code=agency, kind=AgencyKind.police if agency == "police-beijing" else None)
        http, idp = await trusting()
        assert_invalid_token(await http.get("/v1/me", headers=bearer(idp.token(agency=agency))))

    @pytest.mark.parametrize("region", ["", "5", "52", "520102", "1101"], ids=repr)
    async def test_external_issuer_cannot_leave_its_region(self, trusting: Trusting, region: str) -> None:
        http, idp = await trusting()
        response = await http.get("/v1/me", headers=bearer(idp.token(region=region)))
        assert_invalid_token(response)
        assert "region" in response.json()["detail"]

    async def test_nationwide_region_only_from_a_nationwide_trust(self, trusting: Trusting) -> None:
        http, idp = await trusting(region="")
        response = await http.get("/v1/me", headers=bearer(idp.token(region="")))
        assert response.status_code == 200, response.text
        assert response.json()["region"] == ""

    async def test_refusal_is_logged_with_the_issuer_and_reason_never_the_token(
        self, trusting: Trusting, auth_log: list[logging.LogRecord]
    ) -> None:
        http, idp = await trusting()
        token = idp.token(scope="admin")
        assert_invalid_token(await http.get("/v1/me", headers=bearer(token)))
        refusals = [r for r in auth_log if r.levelno == logging.WARNING]
        assert len(refusals) == 1
        message = refusals[0].getMessage()
        assert ISSUER in message and "admin" in message
        for part in token.split("."):
            assert part not in message


class TestSubjectIsNotALocalClient:
    async def test_external_subject_cannot_pose_as_a_client_of_this_service(
        self, trusting: Trusting, db: Database
    ) -> None:
        """A subject equal to a local client id would share that client's log entries and its
        break-glass allowance."""
        local_id, _ = await make_client(db, agency="police", scopes=["custody:read"], region="5101")
        http, idp = await trusting()
        response = await http.get("/v1/me", headers=bearer(idp.token(sub=local_id)))
        assert_invalid_token(response)
        assert "client of this service" in response.json()["detail"]
        assert (await http.get("/v1/me", headers=bearer(idp.token()))).status_code == 200


class TestPlatformAgency:
    async def test_external_issuer_cannot_assert_a_platform_agency_without_privilege(
        self, trusting: Trusting, db: Database
    ) -> None:
        await make_agency(db, code="platform")
        http, idp = await trusting(agencies=["platform"], scopes=["children:read"], region="")
        token = idp.token(agency="platform", scope="children:read", region="")
        response = await http.get("/v1/me", headers=bearer(token))
        assert_invalid_token(response)
        assert "platform" in response.json()["detail"]

    async def test_unregistered_agency_is_refused(self, trusting: Trusting) -> None:
        http, idp = await trusting(agencies=["police", "police-unregistered"])
        response = await http.get("/v1/me", headers=bearer(idp.token(agency="police-unregistered")))
        assert_invalid_token(response)
        assert "not registered" in response.json()["detail"]

    async def test_privileged_issuer_grants_admin_when_its_configuration_says_so(
        self, trusting: Trusting, db: Database
    ) -> None:
        await make_agency(db, code="platform")
        http, idp = await trusting(agencies=["platform"], scopes=["admin"], region="", allow_privileged=True)
        token = idp.token(agency="platform", scope="admin", region="")
        response = await http.get("/v1/clients", headers=bearer(token))
        assert response.status_code == 200, response.text


def huge_body(handler: BaseHTTPRequestHandler, *, declare_length: bool) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    total = 64 * 1024 * 1024
    if declare_length:
        handler.send_header("Content-Length", str(total))
    handler.end_headers()
    chunk = b'{"keys": [' + b" " * (64 * 1024)
    server = handler.server.outer  # type: ignore[attr-defined]
    while server.bytes_sent < total:
        handler.wfile.write(chunk)
        server.bytes_sent += len(chunk)


def drip(handler: BaseHTTPRequestHandler) -> None:
    """A byte every 100 ms: each read arrives well inside any per-read timeout, forever."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    handler.wfile.write(b'{"keys": [')
    for _ in range(600):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.1)


class TestJwksFetchLimits:
    @pytest.mark.parametrize("declare_length", [True, False], ids=["declared", "chunked"])
    async def test_a_huge_jwks_is_not_read_past_the_cap(
        self, trusting: Trusting, declare_length: bool, auth_log: list[logging.LogRecord]
    ) -> None:
        respond = functools.partial(huge_body, declare_length=declare_length)
        http, idp = await trusting(respond=respond)
        started = time.monotonic()
        assert_invalid_token(await http.get("/v1/me", headers=bearer(idp.token())))
        assert time.monotonic() - started < 3
        # The server could push what the socket buffers hold, never the 64 MB it meant to.
        assert http.server.bytes_sent < 16 * 1024 * 1024  # type: ignore[attr-defined]
        assert any(ISSUER in r.getMessage() and "over 65536 bytes" in r.getMessage() for r in auth_log)

    async def test_a_dripping_jwks_is_abandoned_at_the_deadline(
        self, trusting: Trusting, auth_log: list[logging.LogRecord]
    ) -> None:
        http, idp = await trusting(respond=drip, deadline=1.0)
        started = time.monotonic()
        assert_invalid_token(await http.get("/v1/me", headers=bearer(idp.token())))
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 3, elapsed
        assert any(ISSUER in r.getMessage() and "deadline" in r.getMessage() for r in auth_log)
