"""Hints that let the hot paths skip work nobody asked for, refreshed at least every second.

- `SuppressionHints`: which (server, stream) pairs have any suppression. A send to a stream without
  one needs no suppression lookup; a send to a stream with one does the exact lookup as before.
- `WebhookHints`: which (server, stream, event) have a webhook. A delivery nobody subscribed to builds
  no Delivery payload.

A change made in this process is seen at once (the store and the webhook service say so); one made
by another process (split roles, another node) within `ttl` (1 s). So a suppression or webhook
created on another node applies to sends and deliveries from a second later, not from the same
instant; everything created in the process that sends or delivers applies at once.
"""

from __future__ import annotations

import time

from posthouse.server.store.base import Store
from posthouse.server.store.webhooks import TRIGGERS


class SuppressionHints:
    def __init__(self, store: Store, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._pairs: set[tuple[int, str]] = set()
        self._loaded_at = float("-inf")
        self._epoch = -1

    async def may_suppress(self, server_id: int, streams: set[str]) -> bool:
        if self._epoch != self.store.suppression_epoch or time.monotonic() - self._loaded_at > self.ttl:
            epoch = self.store.suppression_epoch
            self._pairs = await self.store.streams_with_suppressions()
            self._loaded_at, self._epoch = time.monotonic(), epoch
        return any((server_id, stream) in self._pairs for stream in streams)


class WebhookHints:
    def __init__(self, store: Store, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._wanted: set[tuple[int, str, str]] = set()
        self._loaded_at = float("-inf")
        self._changed = True

    def invalidate(self) -> None:
        """A webhook was created, edited or deleted in this process."""
        self._changed = True

    async def wants(self, server_id: int, stream: str, record_type: str) -> bool:
        if self._changed or time.monotonic() - self._loaded_at > self.ttl:
            self._changed = False
            wanted: set[tuple[int, str, str]] = set()
            for hook in await self.store.list_all_webhooks():
                for kind, (trigger, _) in TRIGGERS.items():
                    if hook.triggers.get(trigger):
                        wanted.add((hook.server_id, hook.stream, kind))
            self._wanted, self._loaded_at = wanted, time.monotonic()
        return (server_id, stream, record_type) in self._wanted
