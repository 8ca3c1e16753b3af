"""FastAPI security dependencies: bearer token -> :class:`Principal`, with scope checks.

Routes declare ``Security(require, scopes=[Scope.x])`` so the scopes appear in OpenAPI.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.security import OAuth2, SecurityScopes

from app.auth.clients import ClientDirectory
from app.auth.principal import Principal
from app.auth.scopes import SCOPE_DESCRIPTIONS, Scope
from app.auth.tokens import InvalidToken, TokenVerifier
from app.errors import InsufficientScope, Unauthorized


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


async def _principal(request: Request, authorization: str | None) -> Principal:
    if not authorization:
        raise Unauthorized(None)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use an `Authorization: Bearer <token>` header.", code="invalid_token")
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        claims = await verifier.verify(token.strip())
    except InvalidToken as exc:
        raise Unauthorized(f"Invalid token: {exc}.", code="invalid_token") from exc
    if claims.own:
        directory: ClientDirectory = request.app.state.client_directory
        state = await directory.get(claims.subject)
        if state is None or not state.active:
            raise Unauthorized("Invalid token: the client is revoked.", code="invalid_token")
        if state.agency != claims.agency or not claims.region.startswith(state.region):
            raise Unauthorized("Invalid token: claims do not match the client.", code="invalid_token")
        if not {str(s) for s in claims.scopes} <= state.allowed_scopes:
            raise Unauthorized(
                "Invalid token: it carries scopes the client does not hold.", code="invalid_token"
            )
    principal = Principal(
        client_id=claims.subject,
        agency=claims.agency,
        scopes=claims.scopes,
        region=claims.region,
        token_id=claims.token_id,
        issuer=claims.issuer,
    )
    request.state.principal = principal
    return principal


async def require(
    security_scopes: SecurityScopes,
    request: Request,
    authorization: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    """The caller, authenticated, holding every scope the route declares."""
    principal = await _principal(request, authorization)
    missing = [s for s in security_scopes.scopes if Scope(s) not in principal.scopes]
    if missing:
        raise InsufficientScope(
            "This operation needs the scope(s): " + ", ".join(missing) + ".",
            headers={
                "WWW-Authenticate": 'Bearer realm="childlink", error="insufficient_scope", '
                f'scope="{" ".join(security_scopes.scopes)}"'
            },
        )
    return principal
