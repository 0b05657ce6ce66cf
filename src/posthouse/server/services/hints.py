"""Hints that let the hot paths skip work nobody asked for, reloaded whenever what they summarise changes.

- `SuppressionHints`: which (server, stream) pairs have any suppression. A send to a stream without
  one needs no suppression lookup; a send to a stream with one does the exact lookup as before.
- `WebhookHints`: which (server, stream, event) have a webhook. A delivery nobody subscribed to builds
  no Delivery payload.

A hint reloads when the store's count of changes moves (issue 12): a change made in this process moves it
at its commit; one made by another process moves it when that process's announcement arrives. On
PostgreSQL the announcement is a NOTIFY sent in the changing transaction, so another node reloads within
the time a notification takes to arrive (milliseconds), not a second later; on one SQLite file shared by
split roles it is a file next to the database touched right after the commit and looked at when a hint is
used, at most every 10 ms (`SqliteStore.refresh_changes`). `ttl` (1 s) stays as the backstop should an
announcement be lost (a dropped LISTEN connection, a process killed between its commit and its
announcement on SQLite). Concurrent uses that find a hint stale share one reload (services/single_flight.py).
"""

from __future__ import annotations

import time

from posthouse.server.services.single_flight import SingleFlight
from posthouse.server.store.base import Store
from posthouse.server.store.webhooks import TRIGGERS


class SuppressionHints:
    def __init__(self, store: Store, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._pairs: set[tuple[int, str]] = set()
        self._loaded_at = float("-inf")
        self._epoch = -1
        self._loads: SingleFlight[None] = SingleFlight()

    async def may_suppress(self, server_id: int, streams: set[str]) -> bool:
        self.store.refresh_changes()
        if self._epoch != self.store.suppression_epoch or time.monotonic() - self._loaded_at > self.ttl:
            await self._loads.run(self.store.suppression_epoch, self._load)
        return any((server_id, stream) in self._pairs for stream in streams)

    async def _load(self) -> None:
        epoch = self.store.suppression_epoch
        pairs = await self.store.streams_with_suppressions()
        self._pairs, self._loaded_at, self._epoch = pairs, time.monotonic(), epoch


class WebhookHints:
    def __init__(self, store: Store, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._wanted: set[tuple[int, str, str]] = set()
        self._loaded_at = float("-inf")
        self._generation = 0  # moved by `invalidate`
        self._loaded_for: tuple[int, int] | None = None  # (the store's webhook epoch, generation) last loaded
        self._loads: SingleFlight[None] = SingleFlight()

    def invalidate(self) -> None:
        """A webhook was created, edited or deleted in this process."""
        self._generation += 1

    async def wants(self, server_id: int, stream: str, record_type: str) -> bool:
        self.store.refresh_changes()
        current = (self.store.webhook_epoch, self._generation)
        if self._loaded_for != current or time.monotonic() - self._loaded_at > self.ttl:
            await self._loads.run(current, self._load)
        return (server_id, stream, record_type) in self._wanted

    async def _load(self) -> None:
        current = (self.store.webhook_epoch, self._generation)
        wanted: set[tuple[int, str, str]] = set()
        for hook in await self.store.list_all_webhooks():
            for kind, (trigger, _) in TRIGGERS.items():
                if hook.triggers.get(trigger):
                    wanted.add((hook.server_id, hook.stream, kind))
        self._wanted, self._loaded_at, self._loaded_for = wanted, time.monotonic(), current
