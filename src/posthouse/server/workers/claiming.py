"""The loop every leasing worker runs: claim as much work as there are free slots, run it concurrently,
sleep until woken (new work) or the poll interval passes, and on stop let what is in flight finish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from posthouse.server.errors import StoreError
from posthouse.server.services.wakeup import Wakeup

log = logging.getLogger("posthouse.workers")

T = TypeVar("T")


async def claim_loop(*, stopping: asyncio.Event, wakeup: Wakeup, poll_seconds: float, concurrency: int,
                     batch_size: int, claim: Callable[[int], Awaitable[list[T]]],
                     work: Callable[[list[T]], Iterable[Coroutine[Any, Any, None]]], what: str,
                     refill: int = 1) -> None:
    """Run until `stopping` is set, then wait for the work in flight.

    `claim(limit)` leases up to `limit` items (`limit` = free slots, at most `batch_size`); `work(items)`
    gives one coroutine per unit of work (a slot each). A failed claim is logged and retried after the
    poll interval: the store may be briefly unavailable, and nothing claimed is lost meanwhile.

    `refill`: with work in flight, claim only once that many slots are free, so that a busy loop claims several
    items per claim (a write transaction each) instead of one per item finished. With fewer in flight than
    `concurrency - refill` it claims at once, so an idle worker does not wait.
    """
    inflight: set[asyncio.Task[None]] = set()
    while not stopping.is_set():
        free = concurrency - len(inflight)
        if free <= 0 or (inflight and free < refill):
            await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            continue
        try:
            claimed = await claim(min(batch_size, free))
        except StoreError as exc:
            log.error("claiming %s failed, retrying: %s", what, exc)
            await wakeup.wait(poll_seconds)
            continue
        if not claimed:
            await wakeup.wait(poll_seconds)
            continue
        for unit in work(claimed):
            task = asyncio.create_task(unit)
            inflight.add(task)
            task.add_done_callback(inflight.discard)
    if inflight:
        await asyncio.gather(*inflight, return_exceptions=True)
