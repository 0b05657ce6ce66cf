"""The stats rollups table on a real database: increments add up, keys stay apart, concurrent bumps lose nothing."""

from __future__ import annotations

import asyncio

from posthouse.server.domain.stats import Family, Metric, StatKey, day_of, family_metric, split_metric
from posthouse.server.store.base import Store
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
