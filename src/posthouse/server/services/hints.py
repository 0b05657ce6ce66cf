"""Hints that let the hot paths skip work nobody asked for.

- `SuppressionHints`: a Bloom filter of every suppressed (server, stream, address). A recipient it has
  never seen is certainly not suppressed, so a send to such recipients needs no suppression lookup; a
  recipient it may have seen is looked up exactly, as before. Reactivated addresses stay in the filter
  until its next full load: they only cost a lookup.
- `WebhookHints`: which (server, stream, event) have a webhook. A delivery nobody subscribed to builds
  no Delivery payload.

A change made in this process is seen at once (the store and the webhook service say so); one made
by another process (split roles, another node) within `ttl` (1 s). So a suppression or webhook
created on another node applies to sends and deliveries from a second later, not from the same
instant; everything created in the process that sends or delivers applies at once (on the embedded
SQLite default, one process does everything).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable

from posthouse.server.store.base import Store
from posthouse.server.store.webhooks import TRIGGERS

_FULL_LOAD_EVERY = 300.0  # seconds: a full load also forgets reactivated addresses
_CLOCK_SKEW = 5_000_000  # µs: how far another node's clock may lag and its new suppressions still be read
_MIN_CAPACITY = 65_536


class BloomFilter:
    """A set that may answer "maybe" for something never added (about 1% of the time at capacity), and
    never answers "no" for something that was: ten bits and seven hashes per element of capacity."""

    HASHES = 7

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 1)
        self.bits = self.capacity * 10
        self._array = bytearray((self.bits + 7) // 8)
        self.count = 0

    def _positions(self, key: bytes) -> Iterable[int]:
        digest = hashlib.blake2b(key, digest_size=16).digest()
        h1, h2 = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1
        return ((h1 + i * h2) % self.bits for i in range(self.HASHES))

    def add(self, key: bytes, *, new: bool = True) -> None:
        """Add `key`; `new=False` for one that may be in already (it is not counted again)."""
        for position in self._positions(key):
            self._array[position >> 3] |= 1 << (position & 7)
        self.count += new

    def __contains__(self, key: bytes) -> bool:
        return all(self._array[position >> 3] & (1 << (position & 7)) for position in self._positions(key))


def suppression_key(server_id: int, stream: str, email: str) -> bytes:
    return f"{server_id}\x1f{stream}\x1f{email.lower()}".encode()


class SuppressionHints:
    def __init__(self, store: Store, ttl: float = 1.0) -> None:
        self.store = store
        self.ttl = ttl
        self._filter: BloomFilter | None = None
        self._newest = 0  # the latest created_at read (µs)
        self._loaded_at = float("-inf")
        self._fully_loaded_at = float("-inf")
        self._epoch = -1
        self._lock = asyncio.Lock()

    async def candidates(self, server_id: int, recipients: Iterable[tuple[str, str]]) -> set[str]:
        """Of these (stream, lower-cased address) pairs, the addresses that may be suppressed."""
        await self._refresh()
        assert self._filter is not None
        return {email for stream, email in recipients if suppression_key(server_id, stream, email) in self._filter}

    async def _refresh(self) -> None:
        if self._fresh():
            return
        async with self._lock:  # concurrent sends wait for one refresh instead of each running their own
            if self._fresh():
                return
            now = time.monotonic()
            epoch = self.store.suppression_epoch
            current = self._filter
            full = current is None or now - self._fully_loaded_at > _FULL_LOAD_EVERY or current.count > current.capacity
            # Read a little before the newest row seen: rows from a node whose clock lags, or committed late.
            rows = await self.store.suppressions_since(None if full else self._newest - _CLOCK_SKEW)
            if full:
                self._filter = BloomFilter(max(_MIN_CAPACITY, 2 * len(rows)))  # room to grow before the next one
                self._fully_loaded_at, self._newest = now, 0
            assert self._filter is not None
            before = self._newest
            for server_id, stream, email, created_at in rows:
                # Rows read again (the margin) are in already; only later ones count toward capacity.
                self._filter.add(suppression_key(server_id, stream, email), new=full or created_at > before)
                self._newest = max(self._newest, created_at)
            self._loaded_at, self._epoch = now, epoch

    def _fresh(self) -> bool:
        return (self._filter is not None and self._epoch == self.store.suppression_epoch
                and time.monotonic() - self._loaded_at <= self.ttl)


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
