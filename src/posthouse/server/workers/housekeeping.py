"""Housekeeping: rows that only ever grow are trimmed here, a bounded batch at a time.

Today that is idempotency keys past their 24 hours (they are refused once expired, but their rows stayed).
Later retention work (message content after its retention period, old webhook attempts) belongs here too.
Every node's worker runs it; the deletes are idempotent, so two nodes at once only share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from posthouse.server.errors import PosthouseError
from posthouse.server.services.clock import Clock
from posthouse.server.store.base import Store

log = logging.getLogger("posthouse.housekeeping")


class Housekeeper:
    def __init__(self, store: Store, clock: Clock, *, interval_seconds: float = 60.0, batch_size: int = 5_000) -> None:
        self.store = store
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """A pass now, then one every interval, until `stop()`."""
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except PosthouseError as exc:
                log.error("housekeeping failed, retrying at the next interval: %s", exc)
            except Exception:  # a bug here must not end housekeeping for the life of the process
                log.exception("housekeeping failed unexpectedly, retrying at the next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)

    async def sweep(self) -> int:
        """One pass: every expired idempotency key deleted, in batches (each its own short transaction, so
        the writer is never held for long). How many rows went."""
        removed = 0
        while not self._stopping.is_set():
            count = await self.store.purge_idempotency_keys(self.clock.micros(), self.batch_size)
            removed += count
            if count < self.batch_size:
                break
        if removed:
            log.info("removed %d expired idempotency keys", removed)
        return removed
