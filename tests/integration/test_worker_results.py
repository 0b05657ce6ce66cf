"""The delivery worker's result flush (issue 12): whatever goes wrong while recording, no delivery waits
forever for its result to be written, and the next results are written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from test_queue import LEASE, T0, enqueue, make_server, states

from posthouse.server.delivery.sandbox import SandboxTransport
from posthouse.server.domain.retry import RetryPolicy
from posthouse.server.services.clock import Clock
from posthouse.server.services.wakeup import Wakeup
from posthouse.server.store.base import ClaimedDelivery, DeliveryUpdate, Store
from posthouse.server.workers.delivery import DeliveryWorker


class BrokenRecording:
    """The real store, whose `record_attempts` raises something no store should (a bug) while `broken`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.broken = True
        self.calls = 0

    async def record_attempts(self, updates: Sequence[DeliveryUpdate],
                              claim: tuple[str, int, int, int] | None = None) -> list[ClaimedDelivery]:
        self.calls += 1
        if self.broken:
            raise RuntimeError("a bug in the store")
        return await self.store.record_attempts(updates, claim=claim)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_an_unexpected_error_while_recording_wakes_every_waiting_delivery(store: Store) -> None:
    server_id = await make_server(store)
    await enqueue(store, server_id, 4)
    broken = BrokenRecording(store)
    sandbox = SandboxTransport()
    worker = DeliveryWorker(broken, sandbox, sandbox, RetryPolicy((1.0,), 3600.0), Clock(),  # type: ignore[arg-type]
                            Wakeup(), owner="w", batch_size=1)
    rows = await store.claim_deliveries("w", T0, 3, T0 + LEASE)
    # Concurrently, one delivery per row, as the claim loop runs them: they share flushes.
    await asyncio.wait_for(asyncio.gather(*(worker._deliver([row]) for row in rows)), timeout=20)
    assert broken.calls >= 1
    assert await states(store) == {"sending": 3, "queued": 1}  # not recorded: their leases bring them back

    broken.broken = False
    (row,) = await store.claim_deliveries("w", T0, 1, T0 + LEASE)
    await asyncio.wait_for(worker._deliver([row]), timeout=20)
    assert await states(store) == {"sending": 3, "delivered": 1}
