"""The queue's gauges for /metrics: how much is pending and how long the oldest due item has waited, read with
bounded queries over the partial `…_due` indexes (migrations 0001 and 0004), so a scrape costs the same at any
queue size."""

from __future__ import annotations

from dataclasses import dataclass

from posthouse.server.domain.statuses import PENDING_STATES
from posthouse.server.store.sql import Queries

# The same text as the partial indexes' predicates, so both databases use them.
_PENDING_DELIVERIES = "(" + ", ".join(f"'{state.value}'" for state in PENDING_STATES) + ")"
_PENDING_POSTS = "('pending', 'sending')"


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """Counts stop at the cap the query was given; times are µs since the epoch (None: nothing due)."""

    deliveries_pending: int
    deliveries_due: int
    oldest_due_delivery: int | None
    webhook_posts_pending: int
    oldest_due_post: int | None


class GaugeQueries(Queries):
    async def queue_snapshot(self, now: int, cap: int) -> QueueSnapshot:
        """One read, five index range scans, none longer than `cap` rows. A leased row whose lease ran out is
        due (it can be claimed again); one still leased is pending but not due."""
        pending = f"FROM deliveries WHERE state IN {_PENDING_DELIVERIES}"
        posts = f"FROM webhook_posts WHERE state IN {_PENDING_POSTS}"
        row = await self.query_one(
            f"SELECT (SELECT count(*) FROM (SELECT 1 {pending} LIMIT ?) AS p), "
            f"(SELECT count(*) FROM (SELECT 1 {pending} AND next_attempt_at <= ? LIMIT ?) AS d), "
            f"(SELECT min(next_attempt_at) {pending} AND next_attempt_at <= ?), "
            f"(SELECT count(*) FROM (SELECT 1 {posts} LIMIT ?) AS w), "
            f"(SELECT min(next_attempt_at) {posts} AND next_attempt_at <= ?)",
            (cap, now, cap, now, cap, now))
        assert row is not None
        return QueueSnapshot(int(row[0]), int(row[1]), None if row[2] is None else int(row[2]), int(row[3]),
                             None if row[4] is None else int(row[4]))
