"""Waking up when events commit: one LISTEN connection per process, shared by every waiter.

A numbering pass that numbered something (app/events/numbering.py), and a few changes of
subscriptions and deliveries, ``NOTIFY childlink_events`` inside their transaction, so the
notification arrives after the commit. Inserting an event does not (migration 0022): notifying
commits queue behind one lock for the whole server, and the pass that numbers the event right
after its commit notifies for it. Notifications are only a hint to look now: a waiter
always re-reads the database, and everyone also polls, so a lost connection (or a notification
lost with it) costs latency, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

CHANNEL = "childlink_events"


class Notifier:
    def __init__(self, dsn: str, *, channel: str = CHANNEL) -> None:
        self._dsn = dsn
        self._channel = channel
        self._signal = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.generation = 0
        """Notifications seen so far (and reconnections): a waiter that was busy compares it
        with the value it saw last, and so misses nothing that arrived meanwhile."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name="event-notifier")

    def _notified(self, *_: Any) -> None:
        # Wake everyone waiting on the current signal, and give later waiters a fresh one.
        self.generation += 1
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()

    async def wait(self, seconds: float) -> bool:
        """Until the next notification (True) or ``seconds`` have passed (False)."""
        signal = self._signal
        try:
            async with asyncio.timeout(seconds):
                await signal.wait()
        except TimeoutError:
            return False
        return True

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=5.0, server_settings={"application_name": "childlink-notify"}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._notified)
                self.connected, delay = True, 0.5
                self._notified()  # whatever committed while we were away
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                logger.warning("event notifications unavailable: %s", type(exc).__name__)
            finally:
                self.connected = False
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
