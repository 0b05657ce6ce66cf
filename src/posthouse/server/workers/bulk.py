"""The bulk worker: lease accepted bulk requests and expand them into messages (services.bulk)."""

from __future__ import annotations

import asyncio
import logging

from posthouse.server.errors import PosthouseError
from posthouse.server.services.bulk import BulkService
from posthouse.server.services.clock import Clock
from posthouse.server.services.wakeup import Wakeup

log = logging.getLogger("posthouse.bulk")


class BulkWorker:
    def __init__(self, bulk: BulkService, clock: Clock, wakeup: Wakeup, *, owner: str, lease_seconds: float = 60.0,
                 poll_seconds: float = 1.0) -> None:
        self.bulk = bulk
        self.clock = clock
        self.wakeup = wakeup
        self.owner = owner
        self.lease_micros = int(lease_seconds * 1_000_000)
        self.poll_seconds = poll_seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.notify()

    async def run(self) -> None:
        """Lease one waiting bulk request (or one whose expander died: its lease ran out), expand it chunk by
        chunk, extending the lease after each; then the next. Sleeps until woken or the poll interval
        passes when there is none. Stops when `stop()` is called, between chunks."""
        store = self.bulk.store
        while not self._stopping.is_set():
            now = self.clock.micros()
            try:
                record = await store.claim_bulk(self.owner, now, now + self.lease_micros)
            except PosthouseError as exc:
                log.error("claiming a bulk request failed, retrying: %s", exc)
                record = None
            if record is None:
                await self.wakeup.wait(self.poll_seconds)
                continue

            async def keep_lease(bulk_id: str = record.id) -> None:
                if self._stopping.is_set():
                    raise asyncio.CancelledError  # stop between chunks; another run picks it up
                if not await store.extend_bulk_lease(bulk_id, self.owner, self.clock.micros() + self.lease_micros):
                    raise PosthouseError(f"lost the lease of bulk request {bulk_id}")

            try:
                await self.bulk.expand(record, keep_lease)
            except asyncio.CancelledError:
                if not self._stopping.is_set():
                    raise
            except PosthouseError as exc:
                # The lease runs out and this or another worker resumes at the last committed chunk.
                log.error("expanding bulk request %s stopped, it will resume: %s", record.id, exc)
                await self.wakeup.wait(self.poll_seconds)
