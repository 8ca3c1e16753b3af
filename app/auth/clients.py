"""Each worker's short-lived view of API clients' live status.

Tokens are self-contained, so revocation needs a check on use. Asking the database on every
request would cost a round trip on the hot path; instead each worker remembers a client's status
for ``client_status_ttl_seconds`` (2 s by default), which bounds how long a revoked client's
tokens keep working on any instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.singleflight import SingleFlight

_CLIENT_SQL = text("SELECT status, agency_code, allowed_scopes, region FROM api_client WHERE id = :id")


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
        # Concurrent requests of one client whose entry went stale share one query.
        self._loading: SingleFlight[str, ClientState | None] = SingleFlight()
        self._forgets = 0

    async def get(self, client_id: str) -> ClientState | None:
        hit = self._cache.get(client_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return await self._loading.run(client_id, partial(self._load, client_id))

    async def _load(self, client_id: str) -> ClientState | None:
        started, forgets = time.monotonic(), self._forgets
        async with self.engine.connect() as conn:
            row = (await conn.execute(_CLIENT_SQL, {"id": client_id})).first()
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
        if forgets == self._forgets:  # a read begun before any forget() is not kept
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[client_id] = (started, state)
        return state

    def forget(self, client_id: str) -> None:
        """Read this client afresh on its next use; call it once its change has committed."""
        self._forgets += 1
        self._cache.pop(client_id, None)
        self._loading.drop(client_id)
