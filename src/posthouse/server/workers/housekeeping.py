"""Housekeeping: rows that only ever grow are trimmed here, a bounded batch at a time.

Idempotency keys past their 24 hours; everything past its server's retention (`services/retention.py`:
messages with their content, events, opens and clicks and bounces, webhook posts, finished bulk requests,
rotated tokens past their grace period); and Postmark's data removal requests, worked on in the background.
Every node's worker runs it; the deletes are idempotent, so two nodes at once only share the work, and a data
removal is leased to one node at a time.
"""

from __future__ import annotations

import asyncio
import logging

from posthouse.server.errors import PosthouseError
from posthouse.server.services.clock import Clock
from posthouse.server.services.retention import DataRemovalService, RetentionService
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import Store

log = logging.getLogger("posthouse.housekeeping")


class Housekeeper:
    def __init__(self, store: Store, clock: Clock, *, interval_seconds: float = 60.0, batch_size: int = 5_000,
                 retention: RetentionService | None = None, removals: DataRemovalService | None = None,
                 owner: str = "housekeeper", wakeup: Wakeup | None = None) -> None:
        self.store = store
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self.retention = retention
        self.removals = removals
        self.owner = owner  # the lease owner of the data removals this process works on
        self.wakeup = wakeup or Wakeup()  # a new data removal request: start now instead of at the next interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.notify()

    async def run(self) -> None:
        """A pass now, then one every interval (or as soon as a data removal is requested), until `stop()`.
        Each pass: expired idempotency keys, then retention, then pending data removals."""
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except PosthouseError as exc:
                log.error("housekeeping failed, retrying at the next interval: %s", exc)
            except Exception:  # a bug here must not end housekeeping for the life of the process
                log.exception("housekeeping failed unexpectedly, retrying at the next interval")
            if not self._stopping.is_set():
                await self.wakeup.wait(self.interval_seconds)

    async def sweep(self) -> int:
        """One pass, each delete a batch in its own short transaction (the writer is never held for long);
        how many rows went (data removals count apart, in their requests' progress)."""
        removed = 0
        while not self._stopping.is_set():
            count = await self.store.purge_idempotency_keys(self.clock.micros(), self.batch_size)
            removed += count
            if count < self.batch_size:
                break
        if removed:
            log.info("removed %d expired idempotency keys", removed)
        if self.retention is not None:
            removed += (await self.retention.sweep(self._stopping.is_set)).total
        if self.removals is not None:
            await self.removals.run_pending(self.owner, self._stopping.is_set)
        return removed
