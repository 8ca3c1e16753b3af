"""Hostile tokens are refused with 401 and change nothing; key rotation keeps old tokens valid.

Forged tokens are built by hand (and, where the attack needs it, signed with the service's real
private key from the test key folder) and sent to an admin-only write, so a token that slipped
through would create an agency the test can see.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from jose import jwt
from sqlalchemy import text

from app.auth.keys import ALGORITHM, rotate
from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.conftest import bearer, make_client

Claims = dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


@dataclass
class Forger:
    """Builds tokens for one real admin client, valid unless a test spoils one thing."""

    app: Any
    settings: Settings
    client_id: str

    @property
    def kid(self) -> str:
        return str(self.app.state.keys.current.kid)

    def claims(self, **changes: Any) -> Claims:
        """Claims the service itself would issue; a change of ``None`` removes the claim."""
        now = int(time.time())
        claims: Claims = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": self.client_id,
            "agency": "platform",
            "scope": "admin",
            "region": "",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(16),
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def header(self, **changes: Any) -> dict[str, Any]:
        header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": self.kid}
        header.update(changes)
        return {k: v for k, v in header.items() if v is not None}

    def es256(self, claims: Claims | None = None, **header: Any) -> str:
        """Signed with the service's real private key."""
        head = self.header(**header)
        kid = head.pop("kid", None)
        head.pop("alg", None)
        if kid is not None:
            head["kid"] = kid
        return str(
            jwt.encode(
                claims if claims is not None else self.claims(),
                self.app.state.keys.current.private_pem.decode(),
                algorithm=ALGORITHM,
                headers=head,
            )
        )

    def hs256(self, secret: bytes, claims: Claims | None = None) -> str:
        """HMAC-SHA256 by hand: python-jose rightly refuses a public key as an HMAC secret."""
        signing_input = (
            _segment(self.header(alg="HS256"))
            + "."
            + _segment(claims if claims is not None else self.claims())
        )
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    def public_key(self) -> Any:
        pem = self.app.state.keys.current.private_pem
        return serialization.load_pem_private_key(pem, password=None).public_key()


@pytest.fixture
async def forger(app: Any, settings: Settings, db: Database) -> Forger:
    client_id, _ = await make_client(db, agency="platform", scopes=["admin"])
    return Forger(app=app, settings=settings, client_id=client_id)


async def agency_exists(db: Database, code: str) -> bool:
    async with db.engine.connect() as conn:
        found = await conn.execute(text("SELECT 1 FROM agency WHERE code = :code"), {"code": code})
        return found.first() is not None


async def try_to_register_agency(client: httpx.AsyncClient, token: str) -> tuple[httpx.Response, str]:
    code = f"hostile-{secrets.token_hex(3)}"
    response = await client.post(
        "/v1/agencies", json={"code": code, "name": "Hostile", "kind": "police"}, headers=bearer(token)
    )
    return response, code


def flip_signature_byte(token: str) -> str:
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{_b64(bytes(raw))}"


def _now() -> int:
    return int(time.time())


HOSTILE: dict[str, Callable[[Forger], str]] = {
    "alg_none": lambda f: _segment(f.header(alg="none")) + "." + _segment(f.claims()) + ".",
    "alg_none_lowercase_typ_jwt": lambda f: (
        _segment({"alg": "none", "typ": "JWT"}) + "." + _segment(f.claims()) + "."
    ),
    "hs256_with_public_key_pem": lambda f: f.hs256(
        f.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ),
    "hs256_with_public_key_der": lambda f: f.hs256(
        f.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ),
    "hs256_with_public_key_jwk": lambda f: f.hs256(json.dumps(f.app.state.keys.current.public_jwk).encode()),
    "unknown_kid": lambda f: f.es256(kid="k-20991231235959-deadbeef"),
    "kid_is_a_path": lambda f: f.es256(kid="../../etc/passwd"),
    "kid_is_a_relative_key_file": lambda f: f.es256(kid=f"../keys/{f.kid}.pem"),
    "no_kid": lambda f: f.es256(kid=None),
    "expired": lambda f: f.es256(f.claims(iat=_now() - 900, nbf=_now() - 900, exp=_now() - 120)),
    "nbf_in_the_future": lambda f: f.es256(f.claims(nbf=_now() + 300, exp=_now() + 600)),
    "iat_in_the_future": lambda f: f.es256(f.claims(iat=_now() + 300, nbf=None, exp=_now() + 600)),
    "missing_exp": lambda f: f.es256(f.claims(exp=None)),
    "missing_iat": lambda f: f.es256(f.claims(iat=None)),
    "lifetime_over_15_minutes": lambda f: f.es256(f.claims(exp=_now() + 3600)),
    "wrong_audience": lambda f: f.es256(f.claims(aud="another-service")),
    "wrong_issuer": lambda f: f.es256(f.claims(iss="https://issuer.invalid")),
    "wrong_typ": lambda f: f.es256(typ="JWT"),
    "flipped_signature_byte": lambda f: flip_signature_byte(f.es256()),
    "ten_kilobyte_token": lambda f: f.es256(f.claims(padding="x" * 10_240)),
    "scopes_the_client_never_had": lambda f: f.es256(f.claims(scope="admin break-glass children:write")),
    "another_agency": lambda f: f.es256(f.claims(agency="police")),
    "unknown_client": lambda f: f.es256(f.claims(sub="cl_0000000000000000")),
    "garbage": lambda f: "not-a-jwt",
}


class TestHostileTokens:
    async def test_well_formed_forgery_is_accepted_so_each_refusal_is_about_its_one_flaw(
        self, client: httpx.AsyncClient, forger: Forger, db: Database
    ) -> None:
        response, code = await try_to_register_agency(client, forger.es256())
        assert response.status_code == 201, response.text
        assert await agency_exists(db, code)

    @pytest.mark.parametrize("attack", sorted(HOSTILE))
    async def test_hostile_token_gets_401_and_writes_nothing(
        self, client: httpx.AsyncClient, forger: Forger, db: Database, attack: str
    ) -> None:
        hostile = HOSTILE[attack](forger)
        response, code = await try_to_register_agency(client, hostile)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["code"] == "invalid_token"
        assert not await agency_exists(db, code)

    async def test_token_for_a_region_wider_than_the_client_is_refused(
        self, client: httpx.AsyncClient, app: Any, settings: Settings, db: Database
    ) -> None:
        client_id, _ = await make_client(db, agency="platform", scopes=["admin"], region="5101")
        forger = Forger(app=app, settings=settings, client_id=client_id)
        assert (
            await client.get("/v1/me", headers=bearer(forger.es256(forger.claims(region="5101"))))
        ).is_success
        response = await client.get("/v1/me", headers=bearer(forger.es256(forger.claims(region=""))))
        assert response.status_code == 401

    async def test_basic_scheme_instead_of_bearer_is_401(
        self, client: httpx.AsyncClient, forger: Forger
    ) -> None:
        response = await client.get("/v1/me", headers={"Authorization": f"Basic {forger.es256()}"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture
async def second_instance(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another worker of the service: same database and keys, its own caches."""
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as http:
            yield http


async def _client_and_token(client: httpx.AsyncClient, db: Database) -> tuple[str, str]:
    client_id, secret = await make_client(db, agency="platform", scopes=["admin"])
    response = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    return client_id, str(response.json()["access_token"])


class TestRevokedClient:
    async def test_revoked_clients_token_is_refused_at_once_on_the_revoking_instance(
        self, client: httpx.AsyncClient, admin_token: str, db: Database
    ) -> None:
        client_id, token = await _client_and_token(client, db)
        assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200

        revoked = await client.post(f"/v1/clients/{client_id}/revoke", headers=bearer(admin_token))
        assert revoked.status_code == 200, revoked.text

        response, code = await try_to_register_agency(client, token)
        assert response.status_code == 401
        assert "revoked" in response.json()["detail"]
        assert not await agency_exists(db, code)

    async def test_revoked_clients_token_is_refused_on_another_instance_within_seconds(
        self,
        client: httpx.AsyncClient,
        second_instance: httpx.AsyncClient,
        admin_token: str,
        db: Database,
        settings: Settings,
    ) -> None:
        client_id, token = await _client_and_token(client, db)
        # The other worker has seen the client active and caches that.
        assert (await second_instance.get("/v1/me", headers=bearer(token))).status_code == 200

        revoked_at = time.monotonic()
        revoked = await client.post(f"/v1/clients/{client_id}/revoke", headers=bearer(admin_token))
        assert revoked.status_code == 200

        while True:
            response, code = await try_to_register_agency(second_instance, token)
            if response.status_code == 401:
                break
            await asyncio.sleep(0.1)
            assert time.monotonic() - revoked_at < 5, "revoked token still accepted after 5 s"
        # Refused within the configured cache lifetime, well inside the 5 s promise.
        assert time.monotonic() - revoked_at <= settings.client_status_ttl_seconds + 1
        assert not await agency_exists(db, code)


@pytest.fixture
async def rotating_keys(settings: Settings, tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Start instances on a key folder of their own, so rotating it disturbs no other test."""
    own = settings.model_copy(update={"key_dir": tmp_path / "keys"})
    stack: list[Any] = []

    async def start() -> httpx.AsyncClient:
        instance = create_app(own)
        lifespan = instance.router.lifespan_context(instance)
        await lifespan.__aenter__()
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=instance), base_url="http://rotating")
        http.app = instance  # type: ignore[attr-defined]
        stack.append((lifespan, http))
        return http

    yield start
    for lifespan, http in reversed(stack):
        await http.aclose()
        await lifespan.__aexit__(None, None, None)


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


class TestKeyRotation:
    async def test_rotation_signs_with_the_new_key_and_old_tokens_keep_working(
        self, rotating_keys: Callable[[], Any], db: Database, settings: Settings, tmp_path: Path
    ) -> None:
        first = await rotating_keys()
        client_id, secret = await make_client(db, agency="police", scopes=["children:read"])

        async def mint(http: httpx.AsyncClient) -> str:
            response = await http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
            )
            assert response.status_code == 200, response.text
            return str(response.json()["access_token"])

        old_token = await mint(first)
        old_kid = _kid(old_token)

        new_kid, removed = rotate(tmp_path / "keys")
        assert removed == []
        first.app.state.keys.reload()  # type: ignore[attr-defined]  # what every worker does within 5 s

        new_token = await mint(first)
        assert _kid(new_token) == new_kid != old_kid

        # A worker started after the rotation verifies both, and publishes both keys.
        second = await rotating_keys()
        for token in (old_token, new_token):
            assert (await second.get("/v1/me", headers=bearer(token))).status_code == 200
        jwks = (await second.get("/.well-known/jwks.json")).json()
        assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
        assert all("d" not in k for k in jwks["keys"]), "a private key component was published"

    async def test_worker_that_meets_a_new_kid_rereads_the_key_folder(
        self, rotating_keys: Callable[[], Any], db: Database, tmp_path: Path
    ) -> None:
        signer = await rotating_keys()
        verifier = await rotating_keys()  # loaded the folder before the rotation
        client_id, secret = await make_client(db, agency="police", scopes=["children:read"])

        new_kid, _ = rotate(tmp_path / "keys")
        signer.app.state.keys.reload()  # type: ignore[attr-defined]
        response = await signer.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        token = response.json()["access_token"]
        assert _kid(token) == new_kid
        assert (await verifier.get("/v1/me", headers=bearer(token))).status_code == 200


class TestNarrowedClient:
    async def test_token_carrying_a_scope_the_client_no_longer_holds_is_refused(
        self, client: httpx.AsyncClient, app: Any, db: Database
    ) -> None:
        client_id, secret = await make_client(db, agency="police", scopes=["children:read", "custody:read"])
        issued = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        token = str(issued.json()["access_token"])
        assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200

        async with db.sessionmaker() as session:
            await session.execute(
                text("UPDATE api_client SET allowed_scopes = '{children:read}' WHERE id = :id"),
                {"id": client_id},
            )
            await session.commit()
        app.state.client_directory.forget(client_id)  # as the directory's short cache would, in time

        refused = await client.get("/v1/me", headers=bearer(token))
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_token"
        assert "does not hold" in refused.json()["detail"]
        narrower = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert narrower.json()["scope"] == "children:read"
        assert (
            await client.get("/v1/me", headers=bearer(narrower.json()["access_token"]))
        ).status_code == 200
