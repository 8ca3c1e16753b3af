"""Concurrent callers of one key share one load (app/singleflight.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from app.singleflight import SingleFlight

Load = Callable[[], Coroutine[Any, Any, str]]


def held(value: str, release: asyncio.Event, calls: list[str]) -> Load:
    """A load that records its call, waits for ``release``, then answers ``value``."""

    async def load() -> str:
        calls.append(value)
        await release.wait()
        return value

    return load


async def test_concurrent_callers_share_one_load() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    release, calls = asyncio.Event(), []
    waiters = [asyncio.create_task(flights.run("k", held("v", release, calls))) for _ in range(50)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*waiters) == ["v"] * 50
    assert calls == ["v"]


async def test_the_next_call_after_a_load_ends_loads_again() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    release, calls = asyncio.Event(), []
    release.set()
    assert await flights.run("k", held("first", release, calls)) == "first"
    assert await flights.run("k", held("second", release, calls)) == "second"
    assert calls == ["first", "second"]


async def test_a_failed_load_raises_in_every_caller_and_the_next_call_loads_again() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    attempts = 0

    async def load() -> int:
        nonlocal attempts
        attempts += 1
        await release.wait()
        if attempts == 1:
            raise OSError("the database went away")
        return 7

    waiters = [asyncio.create_task(flights.run("k", load)) for _ in range(3)]
    await asyncio.sleep(0.01)
    release.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert [type(o) for o in outcomes] == [OSError] * 3
    assert await flights.run("k", load) == 7
    assert attempts == 2


async def test_a_cancelled_caller_does_not_cancel_the_load_for_the_others() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    release, calls = asyncio.Event(), []
    impatient = asyncio.create_task(flights.run("k", held("v", release, calls)))
    patient = asyncio.create_task(flights.run("k", held("v", release, calls)))
    await asyncio.sleep(0.01)
    impatient.cancel()
    await asyncio.sleep(0.01)
    release.set()
    assert await patient == "v"
    assert impatient.cancelled()


async def test_keys_load_independently() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    release, calls = asyncio.Event(), []
    a = asyncio.create_task(flights.run("a", held("a", release, calls)))
    b = asyncio.create_task(flights.run("b", held("b", release, calls)))
    await asyncio.sleep(0.01)
    release.set()
    assert (await a, await b) == ("a", "b")
    assert calls == ["a", "b"]


async def test_after_a_drop_callers_share_the_new_load_even_once_the_old_one_ends() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    old_release, new_release, calls = asyncio.Event(), asyncio.Event(), []
    old = asyncio.create_task(flights.run("a", held("old", old_release, calls)))
    await asyncio.sleep(0.01)
    flights.drop("a")
    new = asyncio.create_task(flights.run("a", held("new", new_release, calls)))
    await asyncio.sleep(0.01)
    old_release.set()
    assert await old == "old"
    # The old load's end must not forget the new one: a caller now joins it.
    joined = asyncio.create_task(flights.run("a", held("third", new_release, calls)))
    await asyncio.sleep(0.01)
    new_release.set()
    assert (await new, await joined) == ("new", "new")
    assert calls == ["old", "new"]
