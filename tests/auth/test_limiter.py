"""The failed-secret limiter's rule, on a controlled clock: back-off per client and source, a
coarser bound per client that slows an attack without locking the client out, bounded memory."""

from __future__ import annotations

import ipaddress

import pytest

from app.auth.limiter import FORGET_AFTER_SECONDS, MAX_BACKOFF_SECONDS, FailureLimiter, source_address


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(
    clock: Clock, *, per_source: int = 5, per_client: int = 50, max_entries: int = 50_000
) -> FailureLimiter:
    return FailureLimiter(per_source=per_source, per_client=per_client, max_entries=max_entries, clock=clock)


def guess(brake: FailureLimiter, client: str, source: str) -> int:
    """One wrong secret: the wait it was told (and, admitted, its failure recorded)."""
    wait = brake.begin(client, source)
    if not wait:
        brake.failed(client, source)
    return wait


class TestBackOff:
    def test_past_the_budget_each_failure_doubles_the_wait_up_to_the_cap(self, clock: Clock) -> None:
        brake = limiter(clock)
        assert [guess(brake, "cl_a", "203.0.113.7") for _ in range(5)] == [0] * 5
        waits = []
        for _ in range(14):
            wait = brake.begin("cl_a", "203.0.113.7")
            waits.append(wait)
            clock.now += wait
            assert guess(brake, "cl_a", "203.0.113.7") == 0
        assert waits[:5] == [1, 2, 4, 8, 16]
        assert max(waits) == MAX_BACKOFF_SECONDS

    def test_a_success_clears_the_sources_record(self, clock: Clock) -> None:
        brake = limiter(clock)
        for _ in range(5):
            guess(brake, "cl_a", "198.51.100.20")
        clock.now += 1
        assert brake.begin("cl_a", "198.51.100.20") == 0
        brake.succeeded("cl_a", "198.51.100.20")
        assert len(brake) == 0
        assert [guess(brake, "cl_a", "198.51.100.20") for _ in range(5)] == [0] * 5

    def test_an_attackers_source_does_not_hold_back_another(self, clock: Clock) -> None:
        brake = limiter(clock)
        for _ in range(8):
            guess(brake, "cl_a", "203.0.113.7")
        assert brake.begin("cl_a", "203.0.113.7") > 0
        assert brake.begin("cl_a", "198.51.100.20") == 0

    def test_concurrent_checks_cannot_overshoot_the_budget(self, clock: Clock) -> None:
        brake = limiter(clock)
        admitted = [brake.begin("cl_a", "203.0.113.7") == 0 for _ in range(60)]
        assert sum(admitted) == 5

    def test_past_the_budget_one_check_at_a_time(self, clock: Clock) -> None:
        brake = limiter(clock)
        for _ in range(5):
            guess(brake, "cl_a", "203.0.113.7")
        clock.now += 1
        assert brake.begin("cl_a", "203.0.113.7") == 0
        assert brake.begin("cl_a", "203.0.113.7") == 1

    def test_an_abandoned_check_is_uncounted(self, clock: Clock) -> None:
        brake = limiter(clock, per_source=1)
        assert brake.begin("cl_a", "203.0.113.7") == 0
        brake.abandoned("cl_a", "203.0.113.7")
        assert brake.begin("cl_a", "203.0.113.7") == 0

    def test_a_source_is_forgotten_an_hour_after_its_last_failure(self, clock: Clock) -> None:
        brake = limiter(clock)
        for _ in range(5):
            guess(brake, "cl_a", "203.0.113.7")
        clock.now += FORGET_AFTER_SECONDS + 1
        assert [guess(brake, "cl_a", "203.0.113.7") for _ in range(5)] == [0] * 5


class TestClientUnderAttack:
    def test_distributed_guessing_gets_one_guess_per_address_and_the_client_still_gets_in(
        self, clock: Clock
    ) -> None:
        brake = limiter(clock, per_source=5, per_client=50)
        for n in range(10):  # 10 addresses x 5 free guesses reach the client-wide bound
            for _ in range(5):
                guess(brake, "cl_a", f"203.0.113.{n}")
        assert guess(brake, "cl_a", "192.0.2.1") == 0
        assert brake.begin("cl_a", "192.0.2.1") > 0, "a new address backs off after its first failure"
        # The legitimate client's address has no failure on record: it is admitted.
        assert brake.begin("cl_a", "198.51.100.20") == 0
        brake.succeeded("cl_a", "198.51.100.20")
        # Another client is not under attack.
        assert [guess(brake, "cl_b", "192.0.2.1") for _ in range(5)] == [0] * 5

    def test_the_attack_ends_an_hour_after_its_failures(self, clock: Clock) -> None:
        brake = limiter(clock, per_source=5, per_client=10)
        for n in range(2):
            for _ in range(5):
                guess(brake, "cl_a", f"203.0.113.{n}")
        clock.now += FORGET_AFTER_SECONDS + 61
        assert [guess(brake, "cl_a", "192.0.2.1") for _ in range(5)] == [0] * 5


class TestMemoryBound:
    def test_many_ids_stay_within_the_bound_and_the_recent_records_all_survive(self, clock: Clock) -> None:
        brake = limiter(clock, per_source=2, max_entries=1000)
        for n in range(20_000):
            for _ in range(2):
                guess(brake, f"cl_{n:08d}", "192.0.2.1")
        assert len(brake) == 1000
        assert brake.clients_tracked == 1000
        # The least recently used went first, one at a time: the latest thousand are all still
        # backing off (a table that resets when full would have forgotten them too).
        assert all(brake.begin(f"cl_{n:08d}", "192.0.2.1") > 0 for n in range(19_000, 20_000))
        assert brake.begin("cl_00000000", "192.0.2.1") == 0


PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


class TestSourceAddress:
    @pytest.mark.parametrize(
        ("peer", "forwarded", "proxies", "source"),
        [
            ("203.0.113.7", "198.51.100.20", [], "203.0.113.7"),
            ("203.0.113.7", "198.51.100.20", PROXIES, "203.0.113.7"),
            ("10.1.2.3", "198.51.100.20", PROXIES, "198.51.100.20"),
            ("10.1.2.3", "1.2.3.4, 198.51.100.20, 10.9.9.9", PROXIES, "198.51.100.20"),
            ("10.1.2.3", "not-an-address", PROXIES, "10.1.2.3"),
            ("10.1.2.3", None, PROXIES, "10.1.2.3"),
            (None, "198.51.100.20", [], "unknown"),
        ],
        ids=[
            "no_proxies_trusted",
            "peer_not_a_proxy",
            "through_a_proxy",
            "leftmost_entries_are_the_clients_to_forge",
            "malformed_chain",
            "no_header",
            "no_peer",
        ],
    )
    def test_forwarded_for_counts_only_from_a_trusted_proxy(
        self, peer: str | None, forwarded: str | None, proxies: list, source: str
    ) -> None:
        assert source_address(peer, forwarded, proxies) == source
