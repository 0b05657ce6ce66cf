"""The tracking recorder: the loop that writes the tracking listener's queued hits, a batch per transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from posthouse.server.errors import PosthouseError
from posthouse.server.logs import log_event
from posthouse.server.metrics import Metrics
from posthouse.server.services.tracking import PendingHit, TrackingService

log = logging.getLogger("posthouse.tracking")


class TrackingRecorder:
    def __init__(self, tracking: TrackingService, *, batch_size: int = 1000, max_retry_seconds: float = 30.0,
                 metrics: Metrics | None = None) -> None:
        self.tracking = tracking
        self.metrics = metrics
        self.batch_size = batch_size
        self.max_retry_seconds = max_retry_seconds
        self.recorded = 0  # hits recorded since start
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish: what is queued now is still recorded, then `run` returns."""
        self._stopping.set()

    async def run(self) -> None:
        """Take every hit queued (up to `batch_size`), record them in one transaction, repeat.

        No waiting to fill a batch: while one transaction commits, the next batch gathers by itself, so a
        light load is recorded at once and a heavy one in large batches. A batch the store refuses
        (database down, disk full) is retried with a growing pause (to `max_retry_seconds`) until it is
        recorded; meanwhile the queue fills and the listener's handlers wait (back-pressure), so no hit
        is dropped. After `stop()`, the queue is drained, then the loop ends.
        """
        queue = self.tracking.queue
        while True:
            first = await self._next(queue)
            if first is None:
                return
            batch = [first]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            await self._record(batch)

    async def _next(self, queue: asyncio.Queue[PendingHit]) -> PendingHit | None:
        """The next hit, waiting for one; None once stopping with nothing queued."""
        while True:
            if not queue.empty():
                return queue.get_nowait()
            if self._stopping.is_set():
                return None
            getter = asyncio.ensure_future(queue.get())
            stopper = asyncio.ensure_future(self._stopping.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                stopper.cancel()
                return getter.result()
            # A cancelled get leaves its item in the queue (Queue.get removes it only when it resumes).
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter

    async def _record(self, batch: list[PendingHit]) -> None:
        delay = 0.1
        while True:
            try:
                await self.tracking.record_batch(batch)
                self.recorded += len(batch)
                return
            except PosthouseError as exc:
                if self.metrics is not None:
                    self.metrics.tracking_failures.inc()
                # One line per try: the pause doubles up to max_retry_seconds, so a long outage stays a few lines.
                log_event(log, logging.ERROR, "tracking batch failed", hits=len(batch), retry_in_s=round(delay, 1),
                          error=str(exc))
            except Exception:  # a bug on one hit must not stop recording: each hit alone, the bad one dropped
                log.exception("recording %d tracking hits failed unexpectedly; recording them one by one", len(batch))
                if len(batch) > 1:
                    for hit in batch:
                        await self._record([hit])
                    return
                log.error("dropped a tracking hit that cannot be recorded: %r", batch[0])
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_seconds)
