"""Each worker's short-lived view of API clients' live status.

Tokens are self-contained, so revocation needs a check on use. Asking the database on every
request would cost a round trip on the hot path; instead each worker remembers a client's status
for ``client_status_ttl_seconds`` (2 s by default), which bounds how long a revoked client's
tokens keep working on any instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True, slots=True)
class ClientState:
    active: bool
    agency: str
    allowed_scopes: frozenset[str]
    region: str


class ClientDirectory:
    def __init__(self, engine: AsyncEngine, ttl_seconds: float) -> None:
        self.engine = engine
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, ClientState | None]] = {}

    async def get(self, client_id: str) -> ClientState | None:
        now = time.monotonic()
        hit = self._cache.get(client_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT status, agency_code, allowed_scopes, region FROM api_client WHERE id = :id"),
                    {"id": client_id},
                )
            ).first()
        state = (
            ClientState(
                active=row.status == "active",
                agency=row.agency_code,
                allowed_scopes=frozenset(row.allowed_scopes),
                region=row.region,
            )
            if row is not None
            else None
        )
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[client_id] = (now, state)
        return state

    def forget(self, client_id: str) -> None:
        self._cache.pop(client_id, None)
