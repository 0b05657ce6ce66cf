"""The stats rollups table on a real database: increments add up, keys stay apart, concurrent bumps lose nothing."""

from __future__ import annotations

import asyncio
import random

from posthouse.server.domain.stats import Family, Metric, StatKey, day_of, family_metric, split_metric
from posthouse.server.errors import StoreError
from posthouse.server.store.base import Store
from posthouse.server.store.sql import Counters, Stmt
from posthouse.server.store.stats import bump_stats


def key(metric: str, *, day: int = 20_000, tag: str = "", stream: str = "outbound", server: int = 1) -> StatKey:
    return StatKey(server, day, stream, tag, metric)


async def counters(store: Store) -> dict[tuple[object, ...], int]:
    rows = await store.query("SELECT server_id, day, stream, tag, metric, value FROM stats_daily")
    return {tuple(r[:5]): int(r[5]) for r in rows}


async def test_increments_add_up_per_key(store: Store) -> None:
    client = family_metric(Family.OPEN_CLIENT, "Apple Mail")
    await store.transact(bump_stats([(key(Metric.SENT), 2), (key(Metric.SENT), 3), (key(Metric.SENT, tag="a"), 1),
                                     (key(client), 1), (key(Metric.OPENS), 0)]))
    await store.transact(bump_stats([(key(Metric.SENT), 5), (key(Metric.SENT, day=20_001), 1)]))
    assert await counters(store) == {
        (1, 20_000, "outbound", "", "sent"): 10, (1, 20_000, "outbound", "a", "sent"): 1,
        (1, 20_000, "outbound", "", "opens.client:Apple Mail"): 1, (1, 20_001, "outbound", "", "sent"): 1,
    }
    assert bump_stats([]) == [] and bump_stats([(key(Metric.SENT), 0)]) == []


async def test_concurrent_bumps_of_one_counter_lose_nothing(store: Store) -> None:
    await asyncio.gather(*(store.transact(bump_stats([(key(Metric.OPENS), 1), (key(Metric.CLICKS), 2)]))
                           for _ in range(50)))
    found = await counters(store)
    assert found[(1, 20_000, "outbound", "", "opens")] == 50
    assert found[(1, 20_000, "outbound", "", "clicks")] == 100


def test_days_and_metric_names() -> None:
    assert day_of(0) == 0 and day_of(86_400_000_000 - 1) == 0 and day_of(86_400_000_000) == 1
    assert split_metric("opens.client:Outlook 2016") == ("opens.client", "Outlook 2016")
    assert split_metric("sent") == ("sent", None)


async def test_counters_of_many_callers_in_any_order_add_up(store: Store) -> None:
    """Callers bump overlapping counters in different orders, each with a row of its own: every increment
    lands once (the executor sums a group's increments and takes the counters' locks in one order)."""
    rng = random.Random(13)
    keys = [key(Metric.SENT, tag=t) for t in "abcdef"]
    plans = [rng.sample(keys, 3) for _ in range(400)]

    async def caller(n: int, picked: list[StatKey]) -> None:
        # Each caller's statements in its own order: one bump per key, not merged by bump_stats.
        stmts = [s for k in picked for s in bump_stats([(k, n % 3 + 1)])]
        stmts.append(Stmt("INSERT INTO secrets (name, value) VALUES (?, ?)", (f"caller-{n}", "x")))
        await store.transact(stmts)

    async def worker(first: int) -> None:  # one after another, so the groups of concurrent commits vary
        for n in range(first, len(plans), 40):
            await caller(n, plans[n])

    await asyncio.gather(*(worker(w) for w in range(40)))
    expected: dict[str, int] = {}
    for n, picked in enumerate(plans):
        for k in picked:
            expected[k.tag] = expected.get(k.tag, 0) + n % 3 + 1
    found = await counters(store)
    assert {k[3]: v for k, v in found.items()} == expected


async def test_a_failed_callers_increments_are_not_counted(store: Store) -> None:
    await store.transact([Stmt("INSERT INTO secrets (name, value) VALUES ('taken', 'x')")])
    failing = [*bump_stats([(key(Metric.SENT), 100)]), Stmt("INSERT INTO secrets (name, value) VALUES ('taken', 'y')")]
    outcomes = await asyncio.gather(store.transact(failing), store.transact(bump_stats([(key(Metric.SENT), 2)])),
                                    store.transact(bump_stats([(key(Metric.SENT), 3)])), return_exceptions=True)
    assert isinstance(outcomes[0], StoreError)
    assert not isinstance(outcomes[1], BaseException) and not isinstance(outcomes[2], BaseException)
    assert await counters(store) == {(1, 20_000, "outbound", "", "sent"): 5}


def test_counters_sum_per_key_and_run_in_key_order() -> None:
    a, b = bump_stats([(key(Metric.SENT, tag="b"), 1)])[0], bump_stats([(key(Metric.SENT, tag="a"), 2),
                                                                         (key(Metric.OPENS, tag="a"), 0)])[0]
    group = Counters()
    group.add(a, a.many or ())
    other = Counters()
    other.add(b, b.many or ())
    other.add(a, [(1, 20_000, "outbound", "b", "sent", 4), (1, 20_000, "outbound", "c", "sent", 0)])
    group.absorb(other)
    [stmt] = group.statements()
    assert stmt.sql == a.sql and not stmt.additive
    assert list(stmt.many or ()) == [(1, 20_000, "outbound", "a", "sent", 2), (1, 20_000, "outbound", "b", "sent", 5)]
    assert Counters().statements() == []
