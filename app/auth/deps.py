"""FastAPI security dependencies: bearer token -> :class:`Principal`, with scope checks.

Routes declare ``Security(require, scopes=[Scope.x])`` so the scopes appear in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2, SecurityScopes
from starlette.datastructures import State

from app.auth.clients import ClientDirectory
from app.auth.principal import Principal
from app.auth.scopes import SCOPE_DESCRIPTIONS, Scope
from app.auth.tokens import InvalidToken, TokenClaims, TokenVerifier, refuse_external
from app.errors import InsufficientScope, Unauthorized
from app.models.agency import AgencyKind


class ClientCredentialsBearer(OAuth2):
    """OAuth 2.0 client-credentials flow, so Swagger UI's "Authorize" obtains a token."""

    def __init__(self) -> None:
        flows = OAuthFlows(
            clientCredentials=OAuthFlowClientCredentials(
                tokenUrl="/oauth/token", scopes=dict(SCOPE_DESCRIPTIONS)
            )
        )
        super().__init__(
            flows=flows,
            scheme_name="OAuth2ClientCredentials",
            description="Obtain a token at `POST /oauth/token` with your client id and secret.",
            auto_error=False,
        )


oauth2_scheme = ClientCredentialsBearer()


class AgencyKindLookup(Protocol):
    """Agency code -> kind (``app.state.agency_kinds``); None for an unregistered agency."""

    async def kind(self, code: str) -> str | None: ...


async def _check_external_agency(state: State, claims: TokenClaims) -> None:
    """An external token's agency must be registered here (the access policy decides by its
    kind), and a platform agency, which administers ChildLink, needs a privileged trust."""
    kinds: AgencyKindLookup = state.agency_kinds
    kind = await kinds.kind(claims.agency)
    if kind is None:
        raise refuse_external(claims.issuer, "the token's agency is not registered")
    if kind == AgencyKind.platform and not claims.privileged:
        raise refuse_external(claims.issuer, "the issuer is not trusted to assert a platform agency")
    # The subject becomes the caller's client id in the access log and in per-client limits (the
    # break-glass allowance): an external subject that names one of this service's own clients
    # would be counted and logged as that client.
    directory: ClientDirectory = state.client_directory
    if await directory.get(claims.subject) is not None:
        raise refuse_external(claims.issuer, "the token's subject names a client of this service")


async def authenticate(state: State, authorization: str | None) -> Principal:
    """The caller behind an ``Authorization`` header value, or :class:`Unauthorized`."""
    if not authorization:
        raise Unauthorized(None)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use an `Authorization: Bearer <token>` header.", code="invalid_token")
    verifier: TokenVerifier = state.token_verifier
    try:
        claims = await verifier.verify(token.strip())
    except InvalidToken as exc:
        raise Unauthorized(f"Invalid token: {exc}.", code="invalid_token") from exc
    if claims.own:
        directory: ClientDirectory = state.client_directory
        client = await directory.get(claims.subject)
        if client is None or not client.active:
            raise Unauthorized("Invalid token: the client is revoked.", code="invalid_token")
        if client.agency != claims.agency or not claims.region.startswith(client.region):
            raise Unauthorized("Invalid token: claims do not match the client.", code="invalid_token")
        if not claims.scopes <= client.allowed_scopes:  # Scope members compare as their strings
            raise Unauthorized(
                "Invalid token: it carries scopes the client does not hold.", code="invalid_token"
            )
    else:
        try:
            await _check_external_agency(state, claims)
        except InvalidToken as exc:
            raise Unauthorized(f"Invalid token: {exc}.", code="invalid_token") from exc
    return Principal(
        client_id=claims.subject,
        agency=claims.agency,
        scopes=claims.scopes,
        region=claims.region,
        token_id=claims.token_id,
        issuer=claims.issuer,
    )


def check_scopes(principal: Principal, scopes: Sequence[str]) -> None:
    """:class:`InsufficientScope` unless the principal holds every one of ``scopes``."""
    missing = [s for s in scopes if Scope(s) not in principal.scopes]
    if missing:
        raise InsufficientScope(
            "This operation needs the scope(s): " + ", ".join(missing) + ".",
            headers={
                "WWW-Authenticate": 'Bearer realm="childlink", error="insufficient_scope", '
                f'scope="{" ".join(scopes)}"'
            },
        )


async def _principal(request: Request, authorization: str | None) -> Principal:
    principal = await authenticate(request.app.state, authorization)
    request.state.principal = principal
    return principal


async def require(
    security_scopes: SecurityScopes,
    request: Request,
    authorization: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    """The caller, authenticated, holding every scope the route declares."""
    principal = await _principal(request, authorization)
    check_scopes(principal, security_scopes.scopes)
    return principal
