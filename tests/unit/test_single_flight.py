"""One load per key for concurrent misses (services/single_flight.py), and the byte bound of the claim cache
(store/fresh.py)."""

from __future__ import annotations

import asyncio

import pytest

from posthouse.server.services.single_flight import SingleFlight
from posthouse.server.store.fresh import FreshMessages


class Loader:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self) -> int:
        self.calls += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return self.calls


async def test_concurrent_misses_share_one_load_and_the_next_miss_loads_again() -> None:
    flight: SingleFlight[int] = SingleFlight()
    load = Loader()
    waiting = [asyncio.create_task(flight.run("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    load.release.set()
    assert await asyncio.gather(*waiting) == [1] * 20 and load.calls == 1
    assert await flight.run("k", load) == 2


async def test_different_keys_load_apart() -> None:
    flight: SingleFlight[int] = SingleFlight()
    load = Loader()
    load.release.set()
    assert sorted(await asyncio.gather(flight.run(("epoch", 1), load), flight.run(("epoch", 2), load))) == [1, 2]


async def test_a_failed_load_fails_every_waiter_and_is_not_kept() -> None:
    flight: SingleFlight[int] = SingleFlight()
    load = Loader()
    load.fail = RuntimeError("database gone")
    waiting = [asyncio.create_task(flight.run("k", load)) for _ in range(3)]
    await asyncio.sleep(0)
    load.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and load.calls == 1
    load.fail = None
    assert await flight.run("k", load) == 2


async def test_a_cancelled_waiter_leaves_the_load_to_the_others() -> None:
    flight: SingleFlight[int] = SingleFlight()
    load = Loader()
    first = asyncio.create_task(flight.run("k", load))
    second = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    first.cancel()
    load.release.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == 1 and load.calls == 1


def row(message_id: str, size: int) -> tuple[object, ...]:
    return (message_id, 1, "outbound", "bounce@x", 0, b"x" * size, None, "s", "a@x", 0, "{}", None, 0, "None", "a@x")


def test_the_cache_keeps_at_most_its_bytes_dropping_the_oldest() -> None:
    fresh = FreshMessages(max_bytes=1000)
    fresh.put([row("m1", 400), row("m2", 400)])
    fresh.put([row("m3", 400)])
    assert len(fresh) == 2 and set(fresh.take(["m1", "m2", "m3"])) == {"m2", "m3"}
    assert (fresh.hits, fresh.misses, len(fresh)) == (2, 1, 0)
    fresh.put([row("big", 1001)])  # larger than the whole cache: never kept
    assert len(fresh) == 0
    fresh.put([row("m4", 10)])
    fresh.discard(["m4"])
    assert fresh.take(["m4"]) == {}
