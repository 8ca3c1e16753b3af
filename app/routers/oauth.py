"""The OAuth 2.0 token endpoint (client credentials) and the public signing keys."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.limiter import FailureLimiter, source_address
from app.auth.scopes import Scope
from app.auth.tokens import issue_token
from app.db import get_session
from app.errors import PROBLEM_JSON, UnsupportedMediaType, responses
from app.services import client as client_service

router = APIRouter(tags=["auth"])


class TokenRequest(BaseModel):
    """The form fields of a token request (`application/x-www-form-urlencoded`)."""

    # RFC 6749 §3.2: parameters the server does not know are ignored. Absent optional fields
    # are None, but a form has no null, so the schema does not offer one.
    model_config = ConfigDict(extra="ignore")

    # Any string parses, so that another grant answers `unsupported_grant_type`, not
    # `invalid_request`; the spec names the one grant there is.
    grant_type: str = Field(
        max_length=64,
        description="Must be `client_credentials`.",
        examples=["client_credentials"],
        json_schema_extra={"enum": ["client_credentials"]},
    )
    client_id: str | SkipJsonSchema[None] = Field(
        default=None, max_length=64, description="Or use HTTP Basic.", examples=["demo-police"]
    )
    client_secret: str | SkipJsonSchema[None] = Field(
        default=None, max_length=256, description="Or use HTTP Basic.", examples=["cs_Jr6bq0Tn3p3v7H0n4hV6m"]
    )
    scope: str | SkipJsonSchema[None] = Field(
        default=None,
        max_length=1000,
        description="Space-separated subset of the client's scopes; all of them when omitted.",
        examples=["children:read custody:read"],
    )


class TokenResponse(BaseModel):
    access_token: str = Field(examples=["eyJhbGciOiJFUzI1NiIsImtpZCI6ImstMjAy..."])
    token_type: str = Field(examples=["Bearer"])
    expires_in: int = Field(description="Seconds until the token expires.", examples=[600])
    scope: str = Field(examples=["children:read custody:read"])


class OAuthError(BaseModel):
    """RFC 6749 §5.2 error body (with the problem-details fields alongside)."""

    error: str = Field(examples=["invalid_client"])
    error_description: str = Field(examples=["Client authentication failed."])


def _oauth_error(
    status: int,
    error: str,
    description: str,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> JSONResponse:
    body = {
        "error": error,
        "error_description": description,
        "type": "https://childlink.example/problems/" + error,
        "title": description,
        "status": status,
        "code": error,
    }
    base = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    return JSONResponse(body, status_code=status, headers={**base, **(headers or {})}, media_type=media_type)


def _lacking_scopes(lacking: list[str]) -> str:
    """RFC 6749 §5.2 `error_description`: name the scopes the client does not hold, so a caller
    who asked for every scope (Swagger UI with all ticked) knows which to leave out. Only names
    from the scope vocabulary are repeated back."""
    known = [s for s in lacking if s in {str(v) for v in Scope}]
    parts = []
    if known:
        parts.append("The client does not hold the scope(s): " + " ".join(known) + ".")
    if len(known) < len(lacking):
        parts.append("Unknown scope(s) requested; see the spec's OAuth2 scopes.")
    return " ".join(parts) + " Leave `scope` out to get every scope the client holds."


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote(client_id), unquote(secret)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": OAuthError,
        "description": "`invalid_request`, `invalid_scope` or `unsupported_grant_type`.",
    },
    401: {"model": OAuthError, "description": "`invalid_client`: unknown client, wrong secret or revoked."},
    429: {
        "description": "`too_many_requests`: too many failed secrets for this client from this address; "
        "retry after `Retry-After` seconds. Failures from other addresses do not lock a client out.",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/OAuthError"}}},
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    },
    **responses(UnsupportedMediaType),
}

# The form is parsed by hand rather than with FastAPI's `Form` parameters, so that a missing or
# malformed parameter is RFC 6749's `400 invalid_request` (what OAuth client libraries expect),
# not a 422 problem; the request body is documented here instead.
_TOKEN_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": TokenRequest.model_json_schema(),
                "example": {"grant_type": "client_credentials", "scope": "children:read custody:read"},
            }
        },
    }
}


async def _token_request(request: Request) -> TokenRequest | JSONResponse:
    form = await request.form()
    fields: dict[str, str] = {}
    for name in form:
        values = form.getlist(name)
        if len(values) != 1 or not isinstance(values[0], str):
            return _oauth_error(400, "invalid_request", f"Send `{name}` once, as a plain form field.")
        fields[name] = values[0]
    try:
        return TokenRequest.model_validate(fields)
    except ValidationError as exc:
        names = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
        return _oauth_error(400, "invalid_request", "Missing or invalid parameter: " + ", ".join(names) + ".")


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    responses=_ERRORS,
    summary="Obtain an access token (client credentials)",
    openapi_extra=_TOKEN_REQUEST_BODY,
)
async def token(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session, scope="function")],
) -> Any:
    """Exchange a client id and secret for a short-lived (at most 15 minutes) ES256-signed JWT.

    Send the credentials as HTTP Basic (`Authorization: Basic base64(id:secret)`) or as the form
    fields `client_id` and `client_secret`. Errors follow RFC 6749 §5.2.
    """
    parsed = await _token_request(request)
    if isinstance(parsed, JSONResponse):
        return parsed
    grant_type, client_id, client_secret, scope = (
        parsed.grant_type,
        parsed.client_id,
        parsed.client_secret,
        parsed.scope,
    )
    basic = _basic_credentials(request)
    if basic and (client_id or client_secret):
        return _oauth_error(400, "invalid_request", "Send credentials once: HTTP Basic or form fields.")
    if basic:
        client_id, client_secret = basic
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "Only `client_credentials` is supported.")
    if not client_id or not client_secret:
        return _oauth_error(
            401,
            "invalid_client",
            "Client authentication failed.",
            {"WWW-Authenticate": 'Basic realm="childlink"'},
        )

    settings = request.app.state.settings
    limiter: FailureLimiter = request.app.state.token_limiter
    source = source_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings.trusted_proxies,
    )
    retry_after = limiter.begin(client_id, source)
    if retry_after:
        return _oauth_error(
            429,
            "too_many_requests",
            "Too many failed attempts from this address; try again later.",
            {"Retry-After": str(retry_after)},
            media_type=PROBLEM_JSON,
        )
    try:
        found = await client_service.authenticate(session, client_id, client_secret)
    except BaseException:
        limiter.abandoned(client_id, source)
        raise
    if found is None:
        limiter.failed(client_id, source)
        return _oauth_error(
            401,
            "invalid_client",
            "Client authentication failed.",
            {"WWW-Authenticate": 'Basic realm="childlink"'},
        )
    limiter.succeeded(client_id, source)
    client, agency = found
    allowed = [Scope(s) for s in client.allowed_scopes]
    if scope is None or not scope.strip():
        granted = allowed
    else:
        requested = scope.split()
        lacking = [s for s in dict.fromkeys(requested) if s not in client.allowed_scopes]
        if lacking:
            return _oauth_error(400, "invalid_scope", _lacking_scopes(lacking))
        granted = [Scope(s) for s in dict.fromkeys(requested)]
    token_value, lifetime = issue_token(
        request.app.state.keys,
        settings,
        client_id=client.id,
        agency=agency.code,
        scopes=granted,
        region=client.region,
    )
    request.state.client_id = client.id
    request.state.agency = agency.code
    body = TokenResponse(
        access_token=token_value,
        token_type="Bearer",  # noqa: S106
        expires_in=lifetime,
        scope=" ".join(str(s) for s in granted),
    )
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


class JWK(BaseModel):
    kty: str = Field(examples=["EC"])
    crv: str | None = Field(default=None, examples=["P-256"])
    x: str | None = None
    y: str | None = None
    kid: str = Field(examples=["k-20261128030201-ab12cd34"])
    use: str = Field(examples=["sig"])
    alg: str = Field(examples=["ES256"])


class JWKS(BaseModel):
    keys: list[JWK]


@router.get("/.well-known/jwks.json", response_model=JWKS, summary="Public signing keys")
async def jwks(request: Request) -> Any:
    """The public keys that verify ChildLink tokens, newest first; select one by the token's `kid`.

    During a key rotation both the new and the previous key are listed.
    """
    return JSONResponse(request.app.state.keys.jwks(), headers={"Cache-Control": "public, max-age=60"})
