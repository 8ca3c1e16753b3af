"""Issuing and verifying access tokens: the one place that touches python-jose.

python-jose trusts its caller more than we do, so every unsafe default is closed here:
- the algorithm is pinned to the key's own (ES256 for ours, RS256/ES256 for external issuers) and
  checked against the header before any signature work, which refuses ``alg: none`` and
  HMAC-signed-with-the-public-key tokens;
- the key is chosen by ``kid`` (a strict pattern, never a path); we never try every key;
- ``exp``, ``iat``, ``iss``, ``aud``, ``sub`` and ``jti`` are required, ``typ`` must be ``at+jwt``,
  ``iat``/``nbf`` may not lie in the future, the lifetime is capped and the leeway is bounded;
- an oversized token is refused before it is parsed;
- an external issuer speaks only for what its trust configuration lists (agencies, scopes,
  region prefix); a token claiming more is refused and the refusal logged with the issuer;
- an external JWKS is read with a size cap and an overall deadline, so a huge or slow-dripping
  key document can neither bloat nor stall the worker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from app.auth.keys import ALGORITHM, KeyRing
from app.auth.scopes import Scope
from app.config import MAX_TOKEN_LIFETIME_SECONDS, Settings, TrustedIssuer

logger = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 4096
TOKEN_TYPE = "at+jwt"  # noqa: S105  (a media type, not a secret)
EXTERNAL_ALGORITHMS = frozenset({"RS256", "ES256"})
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_REGION = re.compile(r"^\d{0,12}$")
_JWKS_REFRESH_SECONDS = 60.0
JWKS_MAX_BYTES = 64 * 1024
"""A JWKS of a few keys is a few KiB; anything past this is refused unread."""


class InvalidToken(Exception):
    """The token is refused. The message is safe to show the caller."""


class _JwksTooLarge(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    agency: str
    scopes: frozenset[Scope]
    region: str
    issuer: str
    token_id: str
    expires_at: int
    own: bool
    """Issued by this service (so the client's live status is checked on every use)."""
    privileged: bool = False
    """From an external issuer trusted with privileged scopes and platform agencies."""


def issue_token(
    keys: KeyRing,
    settings: Settings,
    *,
    client_id: str,
    agency: str,
    scopes: list[Scope],
    region: str,
) -> tuple[str, int]:
    """Sign an access token; returns it with its lifetime in seconds."""
    key = keys.current
    now = int(time.time())
    lifetime = settings.token_lifetime_seconds
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": client_id,
        "agency": agency,
        "scope": " ".join(str(s) for s in scopes),
        "region": region,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    token = jwt.encode(
        claims,
        key.private_pem.decode(),
        algorithm=ALGORITHM,
        headers={"kid": key.kid, "typ": TOKEN_TYPE},
    )
    return token, lifetime


def _b64_json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(value, dict):
        raise InvalidToken("malformed token")
    return value


def refuse_external(issuer: str, reason: str) -> InvalidToken:
    """Log why an external issuer's token is refused (issuer and reason, never the token)."""
    logger.warning("external token refused: issuer=%s reason=%s", issuer, reason)
    return InvalidToken(reason)


class ExternalIssuer:
    """A trusted external issuer whose keys come from its JWKS URL."""

    def __init__(self, trust: TrustedIssuer, deadline_seconds: float) -> None:
        self.trust = trust
        self.issuer = trust.issuer
        self.jwks_url = trust.jwks_url
        self.deadline = deadline_seconds
        self._keys: dict[str, tuple[str, Key]] = {}
        self._fetched = 0.0

    async def key(self, kid: str, alg: str) -> Key | None:
        entry = self._keys.get(kid)
        if entry is None and time.monotonic() - self._fetched > _JWKS_REFRESH_SECONDS:
            await self._refresh()
            entry = self._keys.get(kid)
        if entry is None or entry[0] != alg:
            return None
        return entry[1]

    async def _fetch(self) -> bytes:
        # httpx's timeout bounds each phase (connect, each read), not the whole: a server that
        # sends a byte every few seconds would never trip it. asyncio.timeout bounds the total.
        async with asyncio.timeout(self.deadline):
            async with httpx.AsyncClient(timeout=self.deadline, follow_redirects=False) as client:
                async with client.stream("GET", self.jwks_url) as response:
                    response.raise_for_status()
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > JWKS_MAX_BYTES:
                        raise _JwksTooLarge
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > JWKS_MAX_BYTES:
                            raise _JwksTooLarge
                    return bytes(body)

    async def _refresh(self) -> None:
        self._fetched = time.monotonic()
        try:
            document = json.loads(await self._fetch())
        except TimeoutError:
            logger.warning("JWKS fetch abandoned: issuer=%s reason=deadline passed", self.issuer)
            return
        except _JwksTooLarge:
            logger.warning(
                "JWKS fetch abandoned: issuer=%s reason=over %d bytes", self.issuer, JWKS_MAX_BYTES
            )
            return
        except (httpx.HTTPError, ValueError) as exc:
            # The exception's text can carry the URL (and a query string); its kind is enough.
            logger.warning("JWKS fetch failed: issuer=%s reason=%s", self.issuer, type(exc).__name__)
            return
        keys: dict[str, tuple[str, Key]] = {}
        for item in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(item, dict):
                continue
            kid, kty = item.get("kid"), item.get("kty")
            alg = item.get("alg") or {"RSA": "RS256", "EC": "ES256"}.get(str(kty))
            if not isinstance(kid, str) or alg not in EXTERNAL_ALGORITHMS:
                continue
            if item.get("use", "sig") != "sig" or "d" in item:
                continue
            try:
                keys[kid] = (alg, jwk.construct(item, alg))
            except JOSEError:
                continue
        self._keys = keys


class TokenVerifier:
    """Verifies bearer tokens from this service and from configured external issuers."""

    def __init__(self, keys: KeyRing, settings: Settings) -> None:
        self.keys = keys
        self.settings = settings
        self.external = {
            issuer: ExternalIssuer(trust, settings.jwks_fetch_deadline_seconds)
            for issuer, trust in settings.external_issuers.items()
        }
        # Verified tokens are remembered until they expire, so a busy client does not pay for
        # a signature check on every request. Bounded; the oldest entries go first.
        self._cache: OrderedDict[str, TokenClaims] = OrderedDict()
        self._cache_max = 20_000

    async def verify(self, token: str) -> TokenClaims:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None:
            if cached.expires_at + self.settings.clock_leeway_seconds > now:
                return cached
            self._cache.pop(token, None)
            raise InvalidToken("token expired")
        claims = await self._verify_uncached(token, now)
        self._cache[token] = claims
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return claims

    async def _verify_uncached(self, token: str, now: float) -> TokenClaims:
        parts = token.split(".")
        if len(parts) != 3 or not all(parts[:2]):
            raise InvalidToken("malformed token")
        header = _b64_json(parts[0])
        unverified = _b64_json(parts[1])
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if not isinstance(kid, str) or not _KID.match(kid):
            raise InvalidToken("token has no usable key id")
        if "jku" in header or "jwk" in header or "x5u" in header or "crit" in header:
            raise InvalidToken("token header not accepted")
        issuer = unverified.get("iss")
        own = issuer == self.settings.issuer
        if own:
            if alg != ALGORITHM:
                raise InvalidToken("algorithm not accepted")
            if typ != TOKEN_TYPE:
                raise InvalidToken("wrong token type")
            signing_key = self.keys.get(kid)
            key = signing_key.public_key if signing_key else None
        elif isinstance(issuer, str) and issuer in self.external:
            if alg not in EXTERNAL_ALGORITHMS:
                raise InvalidToken("algorithm not accepted")
            if typ is not None and str(typ).lower() not in (TOKEN_TYPE, "jwt"):
                raise InvalidToken("wrong token type")
            key = await self.external[issuer].key(kid, str(alg))
        else:
            raise InvalidToken("untrusted issuer")
        if key is None:
            raise InvalidToken("unknown signing key")

        leeway = self.settings.clock_leeway_seconds
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                audience=self.settings.audience,
                issuer=str(issuer),
                options={
                    "leeway": leeway,
                    "require_exp": True,
                    "require_iat": True,
                    "require_iss": True,
                    "require_aud": True,
                    "require_sub": True,
                    "require_jti": True,
                    "verify_at_hash": False,
                },
            )
        except JOSEError as exc:
            raise InvalidToken(_jose_reason(exc)) from exc

        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise InvalidToken("exp and iat must be integers")
        if iat > now + leeway:
            raise InvalidToken("token issued in the future")
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, int) or nbf > now + leeway):
            raise InvalidToken("token not yet valid")
        if exp - iat > MAX_TOKEN_LIFETIME_SECONDS:
            raise InvalidToken("token lifetime exceeds the limit")

        # `region` must be present: an issuer that forgets it must not grant the whole country.
        subject, agency, region = claims.get("sub"), claims.get("agency"), claims.get("region")
        scope_text, jti = claims.get("scope", ""), claims.get("jti")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("token has no subject")
        if not isinstance(agency, str) or not agency:
            raise InvalidToken("token names no agency")
        if not isinstance(region, str) or not _REGION.match(region):
            raise InvalidToken("token region is not a division-code prefix")
        if not isinstance(scope_text, str) or not isinstance(jti, str):
            raise InvalidToken("malformed claims")
        scopes = set()
        for item in scope_text.split():
            try:
                scopes.add(Scope(item))
            except ValueError:
                continue  # an external issuer may grant scopes that mean nothing here
        privileged = False
        if not own:
            trust = self.external[str(issuer)].trust
            _check_trust(trust, agency=agency, scopes=scopes, region=region)
            privileged = trust.allow_privileged
        return TokenClaims(
            subject=subject,
            agency=agency,
            scopes=frozenset(scopes),
            region=region,
            issuer=str(issuer),
            token_id=jti,
            expires_at=exp,
            own=own,
            privileged=privileged,
        )


def _check_trust(trust: TrustedIssuer, *, agency: str, scopes: set[Scope], region: str) -> None:
    """Refuse a claim beyond what the issuer is trusted with, naming the claim (not its value
    where the value is the caller's to choose)."""
    if agency not in trust.agencies:
        raise refuse_external(trust.issuer, "the issuer is not trusted to assert this agency")
    beyond = scopes - trust.scopes
    if beyond:
        raise refuse_external(
            trust.issuer, "the issuer is not trusted to grant " + ", ".join(sorted(str(s) for s in beyond))
        )
    # A prefix check alone lets "" (the whole country) through only for a trust of "".
    if not region.startswith(trust.region):
        raise refuse_external(trust.issuer, "the token region is outside the issuer's trust")


def _jose_reason(exc: JOSEError) -> str:
    text = str(exc).lower()
    if "expired" in text:
        return "token expired"
    if "audience" in text:
        return "wrong audience"
    if "issuer" in text:
        return "wrong issuer"
    if "signature" in text:
        return "signature verification failed"
    return "token not accepted"
