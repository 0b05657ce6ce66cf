"""The database gauges of /metrics (queue depth, oldest due delivery, webhook backlog), read when scraped."""

from __future__ import annotations

import asyncio
import logging
import time

from posthouse.server.errors import StoreError
from posthouse.server.logs import RepeatedFailures
from posthouse.server.metrics import Metrics
from posthouse.server.services.clock import Clock
from posthouse.server.store.base import Store

log = logging.getLogger("posthouse.metrics")
# Counting stops here: past it the number matters less than that it is large, and the scrape stays cheap
# (an index range of 100k entries is a few ms on SQLite).
COUNT_CAP = 100_000


class QueueGauges:
    """Reads the queue's snapshot into `metrics` at most once per `min_interval` (several Prometheus servers
    scraping one node share a read), giving up after `timeout`: a slow database keeps the last values and
    counts a failure, it never holds the scrape."""

    def __init__(self, store: Store, metrics: Metrics, clock: Clock, *, cap: int = COUNT_CAP,
                 min_interval: float = 2.0, timeout: float = 2.0) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.cap = cap
        self.min_interval = min_interval
        self.timeout = timeout
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()
        self._failures = RepeatedFailures(log, interval=300.0)

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._read_at < self.min_interval:
                return
            now = self.clock.micros()
            try:
                async with asyncio.timeout(self.timeout):
                    snap = await self.store.queue_snapshot(now, self.cap)
            except (StoreError, TimeoutError) as exc:
                self.metrics.gauge_failures.inc()
                self._failures.failed("metrics query", "database", str(exc) or "timed out")
                return
            self._failures.succeeded("metrics query", "database")
            self._read_at = time.monotonic()
            m = self.metrics
            m.queue_depth.set(snap.deliveries_pending)
            m.queue_due.set(snap.deliveries_due)
            m.queue_oldest_due.set(_age(now, snap.oldest_due_delivery))
            m.webhook_backlog.set(snap.webhook_posts_pending)
            m.webhook_oldest_due.set(_age(now, snap.oldest_due_post))


def _age(now: int, since: int | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since) / 1_000_000)
