"""The token endpoint's brake on guessed client secrets, kept in each worker's memory.

The rule, per (client id, source address) pair:

- A pair may fail ``per_source`` secret checks freely. From that failure on it waits before its
  next check: 1 s, then twice as long after each further failure, up to 15 minutes. While it
  waits, every attempt from it answers 429 without a secret check (the right secret too: it is
  the source that was guessing).
- An attempt is counted as in flight before the secret check awaits anything, and the budget
  counts checks in flight, so concurrent guesses cannot overshoot it; past the budget a pair has
  at most one check in flight.
- A success clears the pair. A pair is forgotten an hour after its last failure.

Across all sources, a client's failures in the last hour are counted in one-minute buckets.
Past ``per_client`` the client is under attack: every source's free budget drops to one failure,
so each address an attacker brings gets one guess before its back-off starts. A source with no
failure on record is still admitted (one check at a time while the attack lasts), so the
legitimate client keeps getting tokens: the attack is slowed, never allowed to lock it out.

Memory is bounded: at most ``max_entries`` pairs and as many clients are kept, the least
recently touched evicted first, one at a time (an attacker must fail from that many other pairs
to push its own record out). The state is per process: with N workers the budgets are N times
as large.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_BACKOFF_SECONDS = 900.0
FORGET_AFTER_SECONDS = 3600.0
_BUCKET_SECONDS = 60.0
_CLIENT_WINDOW_BUCKETS = int(FORGET_AFTER_SECONDS // _BUCKET_SECONDS)

Key = tuple[str, str]
"""(client id, source address)."""


@dataclass(slots=True)
class _Pair:
    failures: int = 0
    in_flight: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0


class FailureLimiter:
    def __init__(
        self,
        *,
        per_source: int,
        per_client: int,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_source = per_source
        self.per_client = per_client
        self.max_entries = max_entries
        self._clock = clock
        self._pairs: OrderedDict[Key, _Pair] = OrderedDict()
        # client id -> deque of [bucket number, failures in it], oldest first.
        self._clients: OrderedDict[str, deque[list[int]]] = OrderedDict()

    def __len__(self) -> int:
        """Pairs on record (the memory bound: at most ``max_entries``)."""
        return len(self._pairs)

    @property
    def clients_tracked(self) -> int:
        return len(self._clients)

    def begin(self, client_id: str, source: str) -> int:
        """Admit one secret check and count it in flight (0), or the seconds to wait (429).

        Synchronous on purpose: nothing awaits between the check and the count."""
        now = self._clock()
        key = (client_id, source)
        pair = self._pair(key, now)
        if pair.blocked_until > now:
            return max(1, math.ceil(pair.blocked_until - now))
        budget = self._budget(client_id, now)
        if pair.failures >= budget:
            if pair.in_flight:
                return 1
        elif pair.failures + pair.in_flight >= budget:
            return 1
        pair.in_flight += 1
        self._store(key, pair)
        return 0

    def failed(self, client_id: str, source: str) -> None:
        """The admitted check found no client with this secret."""
        now = self._clock()
        key = (client_id, source)
        pair = self._pair(key, now)
        pair.in_flight = max(0, pair.in_flight - 1)
        pair.failures += 1
        pair.last_failure = now
        self._count_client_failure(client_id, now)
        budget = self._budget(client_id, now)
        if pair.failures >= budget:
            pair.blocked_until = now + min(2.0 ** (pair.failures - budget), MAX_BACKOFF_SECONDS)
        self._store(key, pair)

    def succeeded(self, client_id: str, source: str) -> None:
        """The admitted check found the client: its source's record is cleared."""
        key = (client_id, source)
        pair = self._pairs.get(key)
        if pair is None:
            return
        pair.in_flight = max(0, pair.in_flight - 1)
        pair.failures, pair.blocked_until = 0, 0.0
        if not pair.in_flight:
            del self._pairs[key]

    def abandoned(self, client_id: str, source: str) -> None:
        """The admitted check ended without an answer (a database error): uncount it."""
        pair = self._pairs.get((client_id, source))
        if pair is not None:
            pair.in_flight = max(0, pair.in_flight - 1)

    def _pair(self, key: Key, now: float) -> _Pair:
        pair = self._pairs.get(key)
        if pair is None:
            return _Pair()
        if not pair.in_flight and now - pair.last_failure > FORGET_AFTER_SECONDS:
            del self._pairs[key]
            return _Pair()
        return pair

    def _store(self, key: Key, pair: _Pair) -> None:
        self._pairs[key] = pair
        self._pairs.move_to_end(key)
        while len(self._pairs) > self.max_entries:
            self._pairs.popitem(last=False)

    def _budget(self, client_id: str, now: float) -> int:
        return 1 if self._client_failures(client_id, now) >= self.per_client else self.per_source

    def _client_failures(self, client_id: str, now: float) -> int:
        buckets = self._clients.get(client_id)
        if not buckets:
            return 0
        oldest = int(now // _BUCKET_SECONDS) - _CLIENT_WINDOW_BUCKETS
        while buckets and buckets[0][0] <= oldest:
            buckets.popleft()
        return sum(count for _, count in buckets)

    def _count_client_failure(self, client_id: str, now: float) -> None:
        bucket = int(now // _BUCKET_SECONDS)
        buckets = self._clients.get(client_id)
        if buckets is None:
            buckets = self._clients[client_id] = deque(maxlen=_CLIENT_WINDOW_BUCKETS + 1)
        if buckets and buckets[-1][0] == bucket:
            buckets[-1][1] += 1
        else:
            buckets.append([bucket, 1])
        self._clients.move_to_end(client_id)
        while len(self._clients) > self.max_entries:
            self._clients.popitem(last=False)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def source_address(peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[Network]) -> str:
    """The address a request came from: the connection's peer, unless the peer is a trusted
    proxy, in which case the nearest ``X-Forwarded-For`` entry that is not itself a trusted
    proxy (entries further left are the client's to forge)."""
    source = peer or "unknown"
    if not trusted_proxies or not forwarded_for or not _is_trusted(source, trusted_proxies):
        return source
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return source  # a malformed chain proves nothing beyond the proxy
        source = str(address)
        if not any(address in network for network in trusted_proxies):
            return source
    return source


def _is_trusted(address: str, trusted_proxies: Sequence[Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted_proxies)
