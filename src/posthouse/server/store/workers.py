"""Worker presence: a row per running worker process, and the release of the leases of one that is gone
(issue 12: after a crash, held work comes back in seconds instead of when its leases expire)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posthouse.server.domain.statuses import PENDING_STATES
from posthouse.server.store.sql import Queries, Stmt, Then

# The same text as the partial indexes' predicates (migrations 0001 and 0004), so SQLite uses them.
_PENDING_DELIVERIES = "(" + ", ".join(f"'{state.value}'" for state in PENDING_STATES) + ")"
_PENDING_POSTS = "('pending', 'sending')"
# A lease's expiry was written with its owner's clock; the releasing node's may differ this much (µs).
_CLOCK_SKEW = 60_000_000
# Released leases of a row claimed this many times wait CRASH_LOOP_DELAY (µs) instead of being due at once.
CRASH_LOOP_ATTEMPTS = 3
CRASH_LOOP_DELAY = 60_000_000


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    owner: str
    lock_file: str  # empty: the process has none (its data dir was not writable)
    heartbeat_age: int  # µs since its last heartbeat, by the database's clock


@dataclass(frozen=True, slots=True)
class ReleasedLeases:
    """What a gone worker held, now due again."""

    deliveries: int
    webhook_posts: int
    bulk_requests: int

    @property
    def total(self) -> int:
        return self.deliveries + self.webhook_posts + self.bulk_requests


class WorkerQueries(Queries):
    # The database's clock in µs. Heartbeats are written and judged by it, so nodes whose own clocks
    # disagree still agree on how old a heartbeat is.
    db_clock = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"

    async def heartbeat_worker(self, owner: str, lock_file: str, lease_micros: int) -> bool:
        """Renew the worker's row, or register it; False if it had to be registered (its first heartbeat,
        or another process found it silent for too long and released its leases)."""
        clock = self.db_clock

        def register(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            if results[0]:
                return []
            return [Stmt("INSERT INTO workers (owner, lock_file, lease_micros, started_at, heartbeat_at) "
                         f"VALUES (?, ?, ?, {clock}, {clock})", (owner, lock_file, lease_micros))]

        results = await self.transact([
            Stmt(f"UPDATE workers SET heartbeat_at = {clock}, lock_file = ?, lease_micros = ? WHERE owner = ? "
                 "RETURNING owner", (lock_file, lease_micros, owner), fetch=True),
            Then(register),
        ])
        return bool(results[0])

    async def list_workers(self) -> list[WorkerRecord]:
        rows = await self.query(f"SELECT owner, lock_file, {self.db_clock} - heartbeat_at FROM workers ORDER BY owner")
        return [WorkerRecord(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def release_worker(self, owner: str, now: int, *, silent_for: int | None = None) -> ReleasedLeases | None:
        """Forget a worker that is gone and make everything it leased due again by `now`, in one transaction:
        queue rows, webhook posts, bulk requests. None if it was not registered (any more), or, with
        `silent_for` (µs), if its heartbeat is younger than that: checked in the same statement that
        removes its row, so a heartbeat committed meanwhile keeps its leases.

        A released lease counts as the attempt it was claimed for, as an expired one does: the send may
        have reached the relay before the crash, and the claim token (owner, attempts) of a row is never
        handed out twice. Only leases that have not expired are looked for (an expired one is due anyway),
        so the scan covers the due indexes between now and the owner's longest lease, not the backlog.
        """
        if silent_for is None:
            removed = Stmt("DELETE FROM workers WHERE owner = ? RETURNING lease_micros", (owner,), fetch=True)
        else:
            removed = Stmt(f"DELETE FROM workers WHERE owner = ? AND heartbeat_at < {self.db_clock} - ? "
                           "RETURNING lease_micros", (owner, silent_for), fetch=True)

        def release(results: list[list[Sequence[Any]]]) -> list[Stmt]:
            if not results[0]:
                return []
            low, high = now - _CLOCK_SKEW, now + int(results[0][0][0]) + _CLOCK_SKEW
            # Due again as of when they were claimed (`updated_at`, set by the claim): at the head of the
            # queue, where they were, not behind everything that arrived since.
            due = "CASE WHEN updated_at < ? THEN updated_at ELSE ? END"
            # A row claimed CRASH_LOOP_ATTEMPTS times or more may be what kills its workers (a message that
            # crashes the process that sends it): it waits CRASH_LOOP_DELAY, so the rest of the queue goes
            # out between the crashes instead of behind it.
            row_due = f"CASE WHEN attempts >= {CRASH_LOOP_ATTEMPTS} THEN ? ELSE {due} END"
            return [
                Stmt(f"UPDATE deliveries SET state = 'deferred', lease_owner = NULL, next_attempt_at = {row_due}, "
                     f"updated_at = ? WHERE state IN {_PENDING_DELIVERIES} AND next_attempt_at > ? "
                     "AND next_attempt_at <= ? AND state = 'sending' AND lease_owner = ? RETURNING id",
                     (now + CRASH_LOOP_DELAY, now, now, now, low, high, owner), fetch=True),
                Stmt(f"UPDATE webhook_posts SET state = 'pending', lease_owner = NULL, next_attempt_at = {due}, "
                     f"updated_at = ? WHERE state IN {_PENDING_POSTS} AND next_attempt_at > ? "
                     "AND next_attempt_at <= ? AND state = 'sending' AND lease_owner = ? RETURNING id",
                     (now, now, now, low, high, owner), fetch=True),
                Stmt("UPDATE bulk_requests SET lease_owner = NULL, lease_until = 0 "
                     "WHERE status IN ('Accepted', 'Processing') AND lease_owner = ? RETURNING id",
                     (owner,), fetch=True),
                *self.work_notice(),
            ]

        results = await self.transact([removed, Then(release)])
        if not results[0]:
            return None
        return ReleasedLeases(len(results[1]), len(results[2]), len(results[3]))
