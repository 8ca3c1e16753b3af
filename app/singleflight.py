"""Concurrent callers that need the same value share one load of it.

A process-local cache with a time to live (an agency's kind, an API client's status) goes stale
for everyone at once: under load, every request or delivery in flight at that moment finds it
expired together. Each loading the value itself means a burst of identical queries, each queued
for a pooled connection ahead of the real work (with 128 deliveries in flight, the worker stalled
for about a second every 30 s, and its backlog took ten more to drain). Here the first caller
starts the load and the others await the same one.

The load runs as its own task, shielded: a caller that is cancelled (a request's client gone, a
deadline) does not cancel it for the others. A load that fails raises in every caller that
awaited it, and the next call starts a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from functools import partial
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one load per key in flight; callers of the same key share its result. An instance
    belongs to the event loop that first uses it (one per process, made at start-up)."""

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Task[V]] = {}
        self._running: set[asyncio.Task[V]] = set()
        """Every load until it ends, dropped or not: the loop keeps only weak references."""

    async def run(self, key: K, load: Callable[[], Coroutine[Any, Any, V]]) -> V:
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.create_task(load(), name=f"singleflight-{key}")
            self._flights[key] = flight
            self._running.add(flight)
            flight.add_done_callback(partial(self._landed, key))
        return await asyncio.shield(flight)

    def drop(self, key: K) -> None:
        """Callers from now on start a new load, even while an earlier one is still running."""
        self._flights.pop(key, None)

    def _landed(self, key: K, flight: asyncio.Task[V]) -> None:
        self._running.discard(flight)
        if self._flights.get(key) is flight:  # not a newer load started after a drop()
            del self._flights[key]
        if not flight.cancelled():
            # Marked retrieved: when every caller was cancelled, nobody else would (shield
            # gives up its own callback then), and asyncio would log the exception as lost.
            flight.exception()
