"""The reader dependency: the authenticated principal plus what the request states about the
read (purpose of use, break-glass justification)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import State

from app.access.door import Door
from app.access.reading import Reader
from app.audit.oversight import OversightScope
from app.auth.deps import require
from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.errors import Forbidden
from app.models.vocabulary import PurposeOfUse
from app.singleflight import SingleFlight

PURPOSE_MAX_LENGTH = 64
BREAK_GLASS_MAX_LENGTH = 2000
INVESTIGATION_MAX_LENGTH = 64

_PURPOSE_DESCRIPTION = (
    "Why you read: one of " + ", ".join(f"`{p.value}`" for p in PurposeOfUse) + ". Required on every "
    "read of another agency's child data; the access log records it."
)


_KINDS_SQL = text("SELECT code, kind FROM agency")


class AgencyKinds:
    """Agency code -> kind, cached per worker (agencies are registered rarely). When the cache
    is stale, concurrent callers share one reload (app/singleflight.py)."""

    def __init__(self, engine: AsyncEngine, ttl_seconds: float = 30.0) -> None:
        self.engine = engine
        self.ttl = ttl_seconds
        self._kinds: dict[str, str] = {}
        self._loaded = 0.0
        self._loading: SingleFlight[None, dict[str, str]] = SingleFlight()

    async def kind(self, code: str) -> str | None:
        asked = time.monotonic()
        if code in self._kinds and asked - self._loaded <= self.ttl:
            return self._kinds[code]
        kinds = await self._loading.run(None, self._load)
        if code not in kinds and self._loaded < asked:
            # Joined a load begun before this call: the agency may have been registered since.
            kinds = await self._loading.run(None, self._load)
        return kinds.get(code)

    async def _load(self) -> dict[str, str]:
        started = time.monotonic()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_KINDS_SQL)).all()
        self._kinds = {row.code: row.kind for row in rows}
        self._loaded = started
        return self._kinds


async def get_door(request: Request) -> Door:
    door: Door = request.app.state.door
    return door


async def get_reader(
    request: Request,
    principal: Annotated[Principal, Security(require)],
    purpose: Annotated[
        str | None,
        Header(
            alias="X-Purpose-Of-Use",
            max_length=PURPOSE_MAX_LENGTH,
            description=_PURPOSE_DESCRIPTION,
            examples=["child_protection"],
        ),
    ] = None,
    break_glass: Annotated[
        str | None,
        Header(
            alias="X-Break-Glass",
            max_length=BREAK_GLASS_MAX_LENGTH,
            description="Emergency only: `<reason_code>; <justification>` (at least 20 characters; "
            "percent-encode non-ASCII text). Releases, for this request only, categories no statute or "
            "consent covers; the read is flagged and queued for review. Needs the `break-glass` scope.",
            examples=["missing_child; Reported missing at 02:10, guardian unreachable, search under way"],
        ),
    ] = None,
    investigation: Annotated[
        str | None,
        Header(
            alias="X-Investigation-Ref",
            max_length=INVESTIGATION_MAX_LENGTH,
            description="The case reference; required with purpose `investigation`. Reads under an open "
            "investigation stay out of the guardian's access report until the case is closed.",
            examples=["WH-2026-0117"],
        ),
    ] = None,
) -> Reader:
    return await make_reader(
        request.app.state,
        principal,
        purpose=purpose,
        break_glass=break_glass,
        investigation=investigation,
        request_id=getattr(request.state, "request_id", None),
    )


async def make_reader(
    state: State,
    principal: Principal,
    *,
    purpose: str | None,
    break_glass: str | None,
    investigation: str | None,
    request_id: str | None,
) -> Reader:
    """The :class:`Reader` for an authenticated principal and the headers its request states."""
    kinds: AgencyKinds = state.agency_kinds
    kind = await kinds.kind(principal.agency)
    if kind is None:
        raise Forbidden("The token's agency is not registered with ChildLink.", code="unknown_agency")
    return Reader(
        principal=principal,
        agency_kind=kind,
        purpose_raw=purpose,
        break_glass_raw=break_glass,
        request_id=request_id,
        investigation_raw=investigation,
    )


DoorDep = Annotated[Door, Depends(get_door)]


async def get_oversight(
    request: Request, principal: Annotated[Principal, Security(require, scopes=[Scope.audit_read])]
) -> OversightScope:
    """What this ``audit:read`` reader may see: its region, and every agency's records or only
    its own agency's (the policy's ``oversight_agency_kinds``)."""
    kinds: AgencyKinds = request.app.state.agency_kinds
    kind = await kinds.kind(principal.agency)
    if kind is None:
        raise Forbidden("The token's agency is not registered with ChildLink.", code="unknown_agency")
    door: Door = request.app.state.door
    return OversightScope.of(
        agency=principal.agency,
        agency_kind=kind,
        region=principal.region,
        oversight_kinds=door.policy.oversight_agency_kinds,
    )


Oversight = Annotated[OversightScope, Security(get_oversight, scopes=[Scope.audit_read])]
